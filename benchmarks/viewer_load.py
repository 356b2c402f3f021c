"""Load test: many websocket clients hovering at 60 Hz against one viewer server.

The server runs as its own process (``fusevis view`` on the demo MRI/PET pair, loopback,
no background maps); each client, carrying the token the server printed, sends a hover to
a new pixel every 1/60 s and times the answer to each hover it gets back. The server
answers only each client's latest hover, so most hovers are overtaken; the table reports
answered hovers, errors, the latency of the answers, and the server's resident memory over
time (it must not keep growing).

    python benchmarks/viewer_load.py [--clients 20] [--seconds 60] [--network DeepFuse]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import websockets

from fusevis.io import export_demo
from fusevis.viewer.frames import decode_frame


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def client(url: str, index: int, seconds: float, stats: dict) -> None:
    sent: dict[int, float] = {}
    try:
        async with websockets.connect(url, max_size=None) as socket_:

            async def receive() -> None:
                async for message in socket_:
                    header, _ = decode_frame(message)
                    if header["kind"] == "pixel" and header.get("seq") in sent:
                        stats["latencies"].append(time.perf_counter() - sent.pop(header["seq"]))
                        stats["answered"] += 1
                    elif header["kind"] == "error":
                        stats["errors"].append(header["message"])

            reader = asyncio.create_task(receive())
            began = time.perf_counter()
            seq = 0
            while time.perf_counter() - began < seconds:
                seq += 1
                row = 40 + (seq * 7 + index * 13) % 180
                col = 40 + (seq * 3 + index * 29) % 180
                sent[seq] = time.perf_counter()
                await socket_.send(f'{{"type":"hover","row":{row},"col":{col},"seq":{seq}}}')
                stats["sent"] += 1
                stale = [s for s in sent if s < seq - 120]
                for s in stale:  # overtaken hovers are never answered; forget them
                    del sent[s]
                await asyncio.sleep(max(0.0, began + seq / 60 - time.perf_counter()))
            reader.cancel()
    except Exception as error:  # noqa: BLE001 - counted and reported
        stats["errors"].append(f"client {index}: {type(error).__name__}: {error}")


async def sample_memory(pid: int, seconds: float, samples: list[tuple[float, float]]) -> None:
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        samples.append((time.perf_counter() - began, rss_mib(pid)))
        await asyncio.sleep(2)


async def run(url: str, pid: int, clients: int, seconds: float) -> tuple[dict, list]:
    stats = {"sent": 0, "answered": 0, "latencies": [], "errors": []}
    samples: list[tuple[float, float]] = []
    await asyncio.gather(
        sample_memory(pid, seconds, samples),
        *(client(url, i, seconds, stats) for i in range(clients)),
    )
    return stats, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--network", default="DeepFuse")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        pair = [str(p) for p in export_demo("mri-pet", folder)]
        command = [sys.executable, "-m", "fusevis", "view", *pair, "--model", args.network]
        command += ["--no-browser", "--no-maps", "--port", str(port)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            while "FuseVis viewer:" not in line:
                if server.poll() is not None:
                    raise SystemExit(f"the server did not start: {line}")
                line = server.stdout.readline()
            printed = urllib.parse.urlsplit(line.split("FuseVis viewer:", 1)[1].strip())
            token = urllib.parse.parse_qs(printed.query)["token"][0]
            url = f"ws://127.0.0.1:{port}/ws?token={token}"
            time.sleep(0.5)
            stats, samples = asyncio.run(run(url, server.pid, args.clients, args.seconds))
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=30)
    latencies = sorted(1e3 * t for t in stats["latencies"])
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    third = max(1, len(samples) // 3)
    middle = statistics.median(m for _, m in samples[third : 2 * third])
    last = statistics.median(m for _, m in samples[2 * third :])
    print(f"# viewer load: {args.clients} clients × 60 Hz × {args.seconds:.0f} s, {args.network}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, server and clients on loopback")
    print("| hovers sent | answered | errors | p50 ms | p95 ms | RSS start / middle / end MiB |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {stats['sent']} | {stats['answered']} | {len(stats['errors'])} | "
        f"{statistics.median(latencies):.1f} | {p95:.1f} | "
        f"{samples[0][1]:.0f} / {middle:.0f} / {last:.0f} |"
    )
    growth = last - middle
    print(
        f"server alive at the end: {alive}; RSS growth over the last two thirds: {growth:+.1f} MiB"
    )
    for error in stats["errors"][:5]:
        print("error:", error)
    if stats["errors"] or not alive or growth > 50:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
