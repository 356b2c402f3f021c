"""A static HTML report comparing fusion networks on one image set (PNG figures + tables)."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusevis.analysis.regions import region_statistics
from fusevis.analysis.results import SetResult
from fusevis.metrics import METRIC_NAMES
from fusevis.metrics.conventions import DEFAULT_CONVENTION, get_convention
from fusevis.models.inference import minmax


def _figure(rows: int, cols: int, size: float = 2.6):  # noqa: ANN202 - matplotlib objects
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        rows, cols, figsize=(size * cols, size * rows), squeeze=False, layout="constrained"
    )
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    return plt, figure, axes


def _save(plt, figure, path: Path) -> str:  # noqa: ANN001
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path.name


def fused_figure(out: Path, inputs: Sequence[np.ndarray], results: dict[str, SetResult]) -> str:
    """Inputs, then each network's fused image."""
    plt, figure, axes = _figure(1, len(inputs) + len(results))
    panels = [(f"input {k + 1}", x) for k, x in enumerate(inputs)]
    panels += [(name, minmax(r.fused)) for name, r in results.items()]
    for axis, (title, image) in zip(axes[0], panels, strict=True):
        axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=9)
    return _save(plt, figure, out / "fused.png")


ROBUST_PERCENTILE = 99.5


def robust_limit(maps: Sequence[np.ndarray]) -> float:
    """The 99.5th percentile of |G| over ``maps``: a range a few extreme pixels cannot set.

    (FunFuseAn's max(h1, h2) / (h1 + h2) rule makes some guidance values reach 10^6.)
    """
    values = np.abs(np.concatenate([np.ravel(m) for m in maps]))
    return float(np.percentile(values, ROBUST_PERCENTILE)) or float(values.max()) or 1.0


def guidance_figure(out: Path, results: dict[str, SetResult]) -> str:
    """Per network, G_k on one range shared by its inputs, and the guidance RGB.

    Each network's range is the 99.5th percentile of its |G| (stated on its colour bar);
    values beyond it saturate.
    """
    count = len(next(iter(results.values())).guidance)
    plt, figure, axes = _figure(len(results), count + 1)
    for row, (name, result) in enumerate(results.items()):
        limit = robust_limit(result.guidance)
        for k, g in enumerate(result.guidance):
            shown = axes[row, k].imshow(g, cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[row, k].set_title(f"{name} G{k + 1}", fontsize=9)
        figure.colorbar(shown, ax=axes[row, :count].tolist(), fraction=0.03)
        rgb = np.zeros((*result.fused.shape, 3))
        for k in range(min(count, 2)):
            rgb[..., k] = np.clip(np.abs(result.guidance[k]) / limit, 0, 1)
        rgb[..., 2] = minmax(result.fused)
        axes[row, count].imshow(rgb)
        axes[row, count].set_title(f"{name} RGB: |G1|, |G2|, F", fontsize=9)
    return _save(plt, figure, out / "guidance.png")


def scatter_figure(out: Path, results: dict[str, SetResult]) -> str:
    """G1 against G2 for every pixel, one panel per network on its robust range."""
    plt, figure, axes = _figure(1, len(results), 3.0)
    for axis, (name, result) in zip(axes[0], results.items(), strict=True):
        limit = robust_limit(result.guidance[:2])
        axis.hist2d(
            np.clip(result.guidance[0].ravel(), -limit, limit),
            np.clip(result.guidance[1].ravel(), -limit, limit),
            bins=128,
            range=[[-limit, limit], [-limit, limit]],
            cmin=1,
            cmap="viridis",
        )
        axis.set_title(f"{name}: G1 vs G2", fontsize=9)
        axis.set_xticks([-limit, 0, limit])
        axis.set_yticks([-limit, 0, limit])
        axis.tick_params(labelsize=7)
    return _save(plt, figure, out / "scatter.png")


def influence_figure(out: Path, results: dict[str, SetResult]) -> str:
    """Input 1's influence share per network, and the histogram of each input's share."""
    plt, figure, axes = _figure(2, len(results))
    for col, (name, result) in enumerate(results.items()):
        assert result.share is not None
        shown = axes[0, col].imshow(result.share[0], cmap="magma", vmin=0, vmax=1)
        axes[0, col].set_title(f"{name}: share of input 1", fontsize=9)
        for k, share in enumerate(result.share):
            axes[1, col].hist(
                share.ravel(), bins=50, range=(0, 1), alpha=0.6, label=f"input {k + 1}"
            )
        axes[1, col].set_xticks([0, 0.5, 1])
        axes[1, col].tick_params(labelsize=7)
        axes[1, col].legend(fontsize=7)
    figure.colorbar(shown, ax=axes[0].tolist(), fraction=0.02)
    figure.savefig(out / "influence.png", dpi=80)
    plt.close(figure)
    return "influence.png"


def regions_figure(out: Path, base: np.ndarray, regions: dict[str, np.ndarray]) -> str:
    """The regions over input 1."""
    plt, figure, axes = _figure(1, len(regions))
    for axis, (name, region) in zip(axes[0], regions.items(), strict=True):
        axis.imshow(base, cmap="gray")
        axis.imshow(np.ma.masked_where(~region, region), cmap="autumn", alpha=0.5)
        axis.set_title(name, fontsize=9)
    return _save(plt, figure, out / "regions.png")


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5rem 0 1.5rem; }
"""


def _truth_section(out: Path, results: dict[str, SetResult]) -> str:
    """The saliency-against-truth table (and ``truth.csv``), when the set has a truth."""
    scored = {name: r.truth for name, r in results.items() if r.truth is not None}
    if not scored:
        return ""
    rows = [{"network": name, **score.row()} for name, score in scored.items()]
    _write_csv(out / "truth.csv", rows)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    meaning = next(iter(scored.values())).meaning()
    return f"""<h2>Saliency against ground truth</h2>
<p>{html.escape(meaning)} Also in <a href="truth.csv">truth.csv</a>.</p>
{_table(rows, columns)}"""


def write_report(
    out: Path,
    title: str,
    input_names: Sequence[str],
    inputs: Sequence[np.ndarray],
    results: dict[str, SetResult],
    regions: dict[str, np.ndarray],
) -> Path:
    """Write ``index.html``, its PNG figures, ``metrics.csv`` and ``regions.csv`` to ``out``.

    Where the results carry a ground-truth score (:attr:`SetResult.truth`), a section with
    their table and ``truth.csv`` too.
    """
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        ("Fused images", fused_figure(out, inputs, results)),
        (
            "Guidance maps (per network, colour range = 99.5th percentile of |G|) and RGB",
            guidance_figure(out, results),
        ),
    ]
    if len(inputs) >= 2:
        figures.append(("Guidance scatter: G1 against G2", scatter_figure(out, results)))
    with_influence = all(r.share is not None for r in results.values())
    if with_influence:
        figures.append(("Influence shares", influence_figure(out, results)))
    figures.append(("Regions", regions_figure(out, inputs[0], regions)))
    conventions = {r.convention for r in results.values()}
    if len(conventions) > 1:
        raise ValueError(f"results under several metric conventions: {sorted(conventions)}")
    convention = get_convention(conventions.pop() if conventions else DEFAULT_CONVENTION)
    metric_rows = [
        {
            "network": name,
            "metric_convention": r.convention,
            **{m: r.metrics[m] for m in METRIC_NAMES},
        }
        | {k: v for k, v in r.metrics.items() if k.startswith("SSIM_")}
        for name, r in results.items()
    ]
    region_rows = [
        {"network": name, **row}
        for name, r in results.items()
        for row in region_statistics(r.guidance, r.share, regions)
    ]
    _write_csv(out / "metrics.csv", metric_rows)
    _write_csv(out / "regions.csv", region_rows)
    truth_section = _truth_section(out, results)
    metric_columns = list(dict.fromkeys(k for row in metric_rows for k in row))
    region_columns = list(dict.fromkeys(k for row in region_rows for k in row))
    sections = "".join(
        f"<h2>{html.escape(caption)}</h2><img src='{name}' alt='{html.escape(caption)}'>"
        for caption, name in figures
    )
    influence_note = " and of the influence" if with_influence else ""
    listed = ", ".join(f"input {k + 1}: {html.escape(n)}" for k, n in enumerate(input_names))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,"><style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{listed}. Networks: {html.escape(", ".join(results))}.</p>
<h2>Metrics</h2>
<p>Fused images min-max scaled to [0, 1]; metric convention
<code>{html.escape(convention.name)}</code>: {html.escape(convention.description)}
(every choice: <code>fusevis metrics --convention {html.escape(convention.name)} --json</code>,
docs/metrics.md). Also in <a href="metrics.csv">metrics.csv</a>.</p>
{_table(metric_rows, metric_columns)}
<h2>Which input drives the fused image where</h2>
<p>Mean guidance G<sub>k</sub>, each input's share of |G|{influence_note}
per region; <em>drives</em> names the input with the larger share. Also in
<a href="regions.csv">regions.csv</a>.</p>
{_table(region_rows, region_columns)}
{truth_section}
{sections}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
