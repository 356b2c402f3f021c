"""Regions of an image set and which input drives the fused image in each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.filters import threshold_otsu

FOREGROUND_LEVEL = 0.05


def automatic_regions(inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Background, and the foreground split by Otsu's threshold of the last input.

    Foreground: pixels where any input exceeds 0.05 (inputs in [0, 1]). For MRI + PET the
    last input is PET, so the split is high uptake vs the rest of the foreground.
    """
    stack = np.stack([np.asarray(x, np.float64) for x in inputs])
    foreground = stack.max(axis=0) > FOREGROUND_LEVEL
    last = stack[-1]
    name = f"input {len(inputs)}"
    if foreground.sum() < 2 or np.ptp(last[foreground]) == 0:
        return {"foreground": foreground, "background": ~foreground}
    high = foreground & (last > threshold_otsu(last[foreground]))
    return {
        f"{name} high (Otsu)": high,
        "rest of foreground": foreground & ~high,
        "background": ~foreground,
    }


def mask_regions(mask: np.ndarray) -> dict[str, np.ndarray]:
    """A user's mask (non-zero inside) and the rest of the image."""
    inside = np.asarray(mask) != 0
    return {"mask": inside, "outside mask": ~inside}


def region_statistics(
    guidance: Sequence[np.ndarray],
    share: Sequence[np.ndarray] | None,
    regions: dict[str, np.ndarray],
) -> list[dict[str, float | str | int]]:
    """Per region: size, mean G_k, mean |G_k| share and mean influence share of each input.

    ``drives`` names the input with the largest mean influence share (or |G| share without
    influence maps): which input drives the fused image there.
    """
    magnitude = np.stack([np.abs(g) for g in guidance])
    total = magnitude.sum(axis=0)
    guidance_share = np.where(
        total > 0, magnitude / np.where(total > 0, total, 1), 1 / len(guidance)
    )
    rows = []
    for name, region in regions.items():
        row: dict[str, float | str | int] = {"region": name, "pixels": int(region.sum())}
        if not region.any():
            rows.append(row)
            continue
        decisive = []
        for k, g in enumerate(guidance):
            row[f"mean G{k + 1}"] = float(g[region].mean())
            row[f"|G| share {k + 1}"] = float(guidance_share[k][region].mean())
            if share is not None:
                row[f"influence share {k + 1}"] = float(share[k][region].mean())
            decisive.append(row.get(f"influence share {k + 1}", row[f"|G| share {k + 1}"]))
        row["drives"] = f"input {int(np.argmax(decisive)) + 1}"
        rows.append(row)
    return rows
