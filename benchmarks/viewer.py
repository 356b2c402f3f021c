"""Benchmark: hover-to-painted latency of the viewer in headless Chromium.

For every paper network (shipped weights) on the 256² demo MRI/PET pair, the viewer is
served on loopback and Debian's Chromium, driven by Playwright, makes 200 mouse moves over
the fused panel at a steady pace. The page timestamps each hover when it sends it and again
in the animation frame after the answer is drawn; answers overtaken by a newer hover are
dropped by design (the server answers only the latest), so the table counts them too.
Guidance maps are not computed during the run, so that only the hover path is timed.

    python benchmarks/viewer.py [--networks DeepFuse ...] [--moves 200] [--interval-ms 30]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

from playwright.sync_api import sync_playwright

from fusevis.cli.view import build_viewer_data
from fusevis.io import load_demo
from fusevis.viewer.server import start_in_thread

NETWORKS = ["FunFuseAn", "MaskNet", "DeepFuse", "DeepPedestrian"]
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


def path_points(count: int) -> list[tuple[int, int]]:
    """A spiral of distinct pixels over the brain, every move a new pixel."""
    points, seen = [], set()
    step = 0
    while len(points) < count:
        angle = step * 0.35
        radius = 20 + step * 0.45
        point = (int(128 + radius * math.sin(angle)), int(128 + radius * math.cos(angle)))
        step += 1
        if point not in seen and 0 <= point[0] < 256 and 0 <= point[1] < 256:
            seen.add(point)
            points.append(point)
    return points


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(browser: object, name: str, moves: int, interval_s: float) -> dict[str, float]:
    data = build_viewer_data(load_demo("mri-pet"), [name], compute_maps=False)
    viewer = start_in_thread(data)
    try:
        page = browser.new_page(viewport={"width": 1300, "height": 1150})
        page.goto(viewer.url)  # carries ?token=; the page keeps its cookie
        page.wait_for_function("window.fusevis && window.fusevis.ready", timeout=60_000)
        page.wait_for_function("window.fusevis.painted > 0", timeout=60_000)
        box = page.locator("canvas[aria-label^='fused']").bounding_box()
        page.evaluate("window.fusevis.latencies.length = 0")
        began = time.perf_counter()
        for index, (row, col) in enumerate(path_points(moves)):
            page.mouse.move(math.ceil(box["x"] + col), math.ceil(box["y"] + row))
            wait = began + (index + 1) * interval_s - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        time.sleep(0.5)
        latencies = page.evaluate("window.fusevis.latencies")
        compute = page.evaluate("window.fusevis.computeMs.slice(1)")
        render = page.evaluate("window.fusevis.renderMs.slice(1)")
        sent = page.evaluate("window.fusevis.sent")
        page.close()
    finally:
        viewer.stop()
    return {
        "painted": len(latencies),
        "sent": sent,
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "max": max(latencies),
        "server": statistics.median(compute),
        "render": statistics.median(render),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=30.0)
    args = parser.parse_args()
    print(f"# viewer hover latency, 256² demo pair, {args.moves} moves every {args.interval_ms} ms")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, headless Chromium"
    )
    print(
        "| network | hovers sent | painted | p50 ms | p95 ms | max ms "
        "| server ms (median) | page render ms (median) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=LAUNCH_ARGS
        )
        for name in args.networks:
            result = measure(browser, name, args.moves, args.interval_ms / 1000)
            print(
                f"| {name} | {result['sent']} | {result['painted']} | {result['p50']:.1f} | "
                f"{result['p95']:.1f} | {result['max']:.1f} | {result['server']:.1f} | "
                f"{result['render']:.1f} |",
                flush=True,
            )
        browser.close()


if __name__ == "__main__":
    main()
