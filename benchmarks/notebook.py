"""Benchmark: hover-to-painted latency of the notebook Explorer beside the standalone viewer.

For every paper network (shipped weights) on the 256² demo MRI/PET pair, in one run and
one headless Chromium (Debian's, driven by Playwright): the standalone viewer is measured
as ``benchmarks/viewer.py`` measures it, then an ``Explorer`` of the same network is shown
in a notebook of a JupyterLab started here (loopback, a token, a temporary root; see
``tests/notebook/jupyter.py``) and the same mouse path is replayed over its fused panel
(shown at 256 CSS px, one pixel each, as in the viewer). Both pages timestamp a hover when
they send it and again in the animation frame after its answer is drawn; answers overtaken
by a newer hover are dropped by design in both. Guidance maps are off, so that only the
hover path is timed: websocket frames in the viewer, widget messages through the Jupyter
server and kernel in the notebook.

    python benchmarks/notebook.py [--networks DeepFuse ...] [--moves 200] [--interval-ms 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from tests.notebook.jupyter import jupyterlab, write_notebook  # noqa: E402

from viewer import LAUNCH_ARGS, NETWORKS, percentile, replay_path  # noqa: E402
from viewer import measure as measure_viewer  # noqa: E402

APP = "window.jupyterapp.shell.currentWidget"
RUN_CELL = f"""async (index) => {{
    await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
    {APP}.content.activeCellIndex = index;
    await window.jupyterapp.commands.execute('notebook:run-cell');
}}"""
HOOK = "(window.fusevisWidgets || []).find((h) => h.root.isConnected && h.ready)"


def cells(networks: list[str], size: int) -> list[str]:
    """A set-up cell, then one cell per network showing its Explorer (closing the last one)."""
    setup = (
        f"import sys\nsys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "from viewer import demo_pair\nfrom fusevis.notebook import Explorer\n"
        f"pair = demo_pair({size})\nw = None"
    )
    shown = [
        f"if w is not None:\n    w.close()\nw = Explorer({name!r}, pair, compute_maps=False)\nw"
        for name in networks
    ]
    return [setup, *shown]


def measure_notebook(
    page: object, index: int, moves: int, interval_s: float, size: int
) -> dict[str, float]:
    """Show the Explorer of cell ``index`` and replay the mouse path over its fused panel."""
    page.evaluate(RUN_CELL, index)
    page.wait_for_function(f"{HOOK} && {HOOK}.painted > 0", timeout=300_000)
    canvas = page.locator(".fusevis-widget canvas[aria-label^='fused']")
    canvas.scroll_into_view_if_needed()
    page.mouse.move(2, 2)
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    page.evaluate(f"{HOOK}.latencies.length = 0")
    sent_before = page.evaluate(f"{HOOK}.sent")
    replay_path(page, box, size, moves, interval_s)
    latencies = page.evaluate(f"{HOOK}.latencies")
    compute = page.evaluate(f"{HOOK}.computeMs.slice(1)")
    kernel = page.evaluate(f"{HOOK}.kernelMs.slice(1)")
    render = page.evaluate(f"{HOOK}.renderMs.slice(1)")
    sent = page.evaluate(f"{HOOK}.sent") - sent_before
    return {
        "painted": len(latencies),
        "sent": sent,
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "max": max(latencies),
        "server": statistics.median(compute),
        "render": statistics.median(render),
        "kernel": statistics.median(kernel),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=256, help="crop the demo pair (pixels)")
    args = parser.parse_args()
    interval_s = args.interval_ms / 1000
    print(
        f"# hover latency, notebook Explorer beside the viewer, {args.size}² demo pair, "
        f"{args.moves} moves every {args.interval_ms} ms, guidance maps off"
    )
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, headless "
        f"Chromium, torch {torch.__version__} ({torch.get_num_threads()} threads here; "
        f"kernel OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )
    print(
        "| network | front end | hovers sent | painted | p50 ms | p95 ms | max ms "
        "| engine ms (median) | kernel ms (median) | page render ms (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with (
        tempfile.TemporaryDirectory(prefix="fusevis-bench-lab-") as folder,
        jupyterlab(Path(folder)) as lab,
        sync_playwright() as playwright,
    ):
        write_notebook(lab.root / "bench.ipynb", cells(args.networks, args.size))
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=LAUNCH_ARGS
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(lab.notebook_url("bench.ipynb"))
        page.wait_for_function(
            f"{APP} && {APP}.sessionContext.session && {APP}.sessionContext.session.kernel "
            f"&& {APP}.sessionContext.session.kernel.status === 'idle'",
            timeout=120_000,
        )
        page.evaluate("window.jupyterapp.shell.collapseLeft()")
        # the viewer's panel size: one image pixel per CSS pixel at 256²
        page.add_style_tag(
            content=".fusevis-widget .panel canvas.image { width: 256px; height: 256px; }"
        )
        page.evaluate(RUN_CELL, 0)
        page.wait_for_function(f"{APP}.content.widgets[0].model.executionCount !== null")
        for index, name in enumerate(args.networks, start=1):
            results = {
                "viewer": measure_viewer(browser, name, args.moves, interval_s, args.size, False),
                "notebook": measure_notebook(page, index, args.moves, interval_s, args.size),
            }
            for front, result in results.items():
                kernel = f"{result['kernel']:.1f}" if "kernel" in result else "–"
                print(
                    f"| {name} | {front} | {result['sent']} | {result['painted']} | "
                    f"{result['p50']:.1f} | {result['p95']:.1f} | {result['max']:.1f} | "
                    f"{result['server']:.1f} | {kernel} | {result['render']:.1f} |",
                    flush=True,
                )
        browser.close()


if __name__ == "__main__":
    main()
