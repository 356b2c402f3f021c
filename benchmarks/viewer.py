"""Benchmark: hover-to-painted latency of the viewer in headless Chromium.

For every paper network (shipped weights) on the 256² demo MRI/PET pair, the viewer is
served on loopback and Debian's Chromium, driven by Playwright, makes 200 mouse moves over
the fused panel at a steady pace. The page timestamps each hover when it sends it and again
in the animation frame after the answer is drawn; answers overtaken by a newer hover are
dropped by design (the server answers only the latest), so the table counts them too.
By default guidance maps are not computed during the run, so that only the hover path is
timed.

``--maps`` computes the guidance maps while hovering (a fresh cache each time, started
whatever their predicted time); with moves further apart than the map worker's 0.3 s
quiet time, each hover then meets a running map pass. ``--threads 1 2`` times each torch
thread count in turn, ``--rounds`` times over, in one run (compare within a run on a shared
machine). ``--size`` crops the demo pair to its centre.

    python benchmarks/viewer.py [--networks DeepFuse ...] [--moves 200] [--interval-ms 30]
    python benchmarks/viewer.py --networks DeepFuse --size 128 --moves 40 \\
        --interval-ms 400 --maps --threads 1 2 --rounds 3
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from playwright.sync_api import Page, sync_playwright

from fusevis.io import image_from_array, load_demo
from fusevis.io.loading import ImageSet
from fusevis.viewer.data import build_viewer_data
from fusevis.viewer.server import start_in_thread

NETWORKS = ["FunFuseAn", "MaskNet", "DeepFuse", "DeepPedestrian"]
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


@contextmanager
def headless_chromium() -> Iterator[object]:
    """Debian's Chromium, headless, with the project's arguments; closed after."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def demo_pair(size: int) -> ImageSet:
    """The demo MRI/PET pair, cropped to its central ``size`` x ``size`` (256: whole)."""
    pair = load_demo("mri-pet")
    height, width = pair.shape
    if size >= min(height, width):
        return pair
    top, left = (height - size) // 2, (width - size) // 2
    return ImageSet(
        [
            image_from_array(image.data[top : top + size, left : left + size], image.source)
            for image in pair
        ]
    )


def replay_path(page: Page, box: dict, size: int, moves: int, interval_s: float) -> None:
    """Move the mouse along :func:`path_points` over ``box`` (a ``size``² panel), one move
    every ``interval_s`` seconds, then let the last answers arrive (0.5 s)."""
    scale = box["width"] / size
    began = time.perf_counter()
    for index, (row, col) in enumerate(path_points(moves, size)):
        x, y = box["x"] + (col + 0.5) * scale, box["y"] + (row + 0.5) * scale
        page.mouse.move(math.floor(x), math.floor(y))
        wait = began + (index + 1) * interval_s - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    time.sleep(0.5)


def path_points(count: int, size: int = 256) -> list[tuple[int, int]]:
    """A spiral of distinct pixels around the centre, every move a new pixel."""
    points, seen = [], set()
    step = 0
    centre = size // 2
    while len(points) < count:
        angle = step * 0.35
        radius = (20 + step * 0.45) * size / 256
        point = (int(centre + radius * math.sin(angle)), int(centre + radius * math.cos(angle)))
        step += 1
        if point not in seen and 0 <= point[0] < size and 0 <= point[1] < size:
            seen.add(point)
            points.append(point)
        if step > 100 * count:
            raise ValueError(f"{count} moves do not fit a {size}² image")
    return points


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(
    browser: object, name: str, moves: int, interval_s: float, size: int, maps: bool
) -> dict[str, float]:
    cache = tempfile.mkdtemp(prefix="fusevis-bench-")
    data = build_viewer_data(
        demo_pair(size), [name], cache=cache, compute_maps=maps, ask_above_s=math.inf
    )
    viewer = start_in_thread(data)
    try:
        page = browser.new_page(viewport={"width": 1300, "height": 1150})
        page.goto(viewer.url)  # carries ?token=; the page keeps its cookie
        page.wait_for_function("window.fusevis && window.fusevis.ready", timeout=60_000)
        page.wait_for_function("window.fusevis.painted > 0", timeout=60_000)
        if maps:  # the maps have started (their first pass reported)
            page.wait_for_function(
                f"(window.fusevis.store.model('{name}').maps.guidance || {{}}).done > 0",
                timeout=300_000,
            )
        box = page.locator("canvas[aria-label^='fused']").bounding_box()
        page.evaluate("window.fusevis.latencies.length = 0")
        progress = data.maps.progress(name, "guidance")
        passes_before = progress.done if progress is not None else 0
        replay_path(page, box, size, moves, interval_s)
        latencies = page.evaluate("window.fusevis.latencies")
        compute = page.evaluate("window.fusevis.computeMs.slice(1)")
        render = page.evaluate("window.fusevis.renderMs.slice(1)")
        sent = page.evaluate("window.fusevis.sent")
        passes = progress.done - passes_before if progress is not None else 0
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
        "passes": passes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=256, help="crop the demo pair (pixels)")
    parser.add_argument("--maps", action="store_true", help="compute guidance maps meanwhile")
    parser.add_argument("--threads", type=int, nargs="+", default=[0], help="0: torch's own")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    print(
        f"# viewer hover latency, {args.size}² demo pair, {args.moves} moves every "
        f"{args.interval_ms} ms, guidance maps {'computed meanwhile' if args.maps else 'off'}"
    )
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, headless "
        f"Chromium, torch {torch.__version__} (default {default_threads} threads)"
    )
    print(
        "| network | torch threads | hovers sent | painted | p50 ms | p95 ms | max ms "
        "| server ms (median) | page render ms (median) | map passes meanwhile |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with headless_chromium() as browser:
        for _ in range(args.rounds):
            for name in args.networks:
                for threads in args.threads:
                    torch.set_num_threads(threads or default_threads)
                    result = measure(
                        browser, name, args.moves, args.interval_ms / 1000, args.size, args.maps
                    )
                    print(
                        f"| {name} | {torch.get_num_threads()} | {result['sent']} | "
                        f"{result['painted']} | {result['p50']:.1f} | {result['p95']:.1f} | "
                        f"{result['max']:.1f} | {result['server']:.1f} | "
                        f"{result['render']:.1f} | {result['passes']} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
