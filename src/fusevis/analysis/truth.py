"""Saliency against ground truth: whether the attribution points at the input that matters.

On a synthetic set (:mod:`fusevis.io.tasks`) it is known which input should drive each
fused pixel: on a multi-focus pair the in-focus one (the focus mask), on an exposure stack
the best-exposed one (each exposure's well-exposedness). This module scores how well a
network's attribution agrees with that truth.

**Multi-focus** — the AUC (area under the ROC curve) of input 1's influence share
``I_1 / (I_1 + I_2)`` as a detector of "input 1 is in focus", over the pixels outside a band
of ``band`` pixels (default 5, about 2σ of the recipe's blur, Chebyshev distance) on either
side of the mask's boundary, where the blurred input carries light from across the boundary
and any network's window straddles both sides. Computed as the Mann–Whitney rank statistic
with tied values given half credit: 1 = every in-focus pixel gets a larger share than every
out-of-focus pixel, 0.5 = chance (a constant share scores exactly 0.5), 0 = the share
points at the out-of-focus input everywhere. The same AUC of ``G1 − G2`` (guidance, the
Jacobian's diagonal only) is given beside it.

**Multi-exposure** — Spearman's rank correlation, over all pixels, between input k's share
and its relative quality ``q_k / Σ_j q_j`` (1/N where every quality is 0), averaged over the
inputs (for two inputs both give the same number); the same with input k's share of
``|G|``. 1 = the share ranks pixels exactly as the quality does, 0 = no monotone relation
(a constant share scores 0), −1 = reversed.

What the numbers are not: they measure whether the attribution agrees with the truth about
which input matters, not how good the fused image is (a network can fuse well with
attributions a score calls poor, and the reverse); they depend on the band; flat regions
look the same sharp or blurred, so there no input is "right" and any share is as good —
such pixels pull a perfect network's AUC towards 0.5 unless it happens to follow the mask
there too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING

import numpy as np

from fusevis.errors import InputError

if TYPE_CHECKING:
    from torch import nn

    from fusevis.analysis.results import SetResult
    from fusevis.io.tasks import TaskPair

FOCUS_BAND = 5

MEANING = {
    "multi-focus": (
        "AUC of input 1's influence share (and of G1-G2) as a detector of the pixels where "
        "input 1 is in focus, outside a band of {band} px around the mask's boundary: "
        "1 = the share ranks every in-focus pixel above every out-of-focus one, 0.5 = chance "
        "(a constant share), 0 = it points at the out-of-focus input. It measures agreement "
        "of the attribution with the focus mask, not fusion quality; flat regions look the "
        "same sharp or blurred and carry no information."
    ),
    "multi-exposure": (
        "Spearman rank correlation between each input's influence share (and |G| share) and "
        "its relative well-exposedness, averaged over the inputs: 1 = the share ranks pixels "
        "as the exposure quality does, 0 = no relation (a constant share), -1 = reversed. It "
        "measures agreement of the attribution with the exposure quality, not fusion quality."
    ),
}


@dataclass(frozen=True)
class GroundTruth:
    """Which input should matter where.

    Attributes
    ----------
    mask : numpy.ndarray or None
        Multi-focus (two inputs): (H, W) bool, True where input 1 is in focus.
    quality : tuple of numpy.ndarray or None
        Multi-exposure: per input, (H, W) non-negative quality (larger = should matter more).
    band : int
        Pixels on each side of the mask's boundary left out of the focus score.
    """

    mask: np.ndarray | None = None
    quality: tuple[np.ndarray, ...] | None = None
    band: int = FOCUS_BAND

    def __post_init__(self) -> None:
        if (self.mask is None) == (self.quality is None):
            raise InputError(None, "ground truth is a focus mask or per-input qualities")
        if self.band < 0:
            raise InputError(None, f"boundary band must be >= 0 pixels, got {self.band}")

    @property
    def task(self) -> str:
        """``multi-focus`` (a mask) or ``multi-exposure`` (qualities)."""
        return "multi-focus" if self.mask is not None else "multi-exposure"

    @classmethod
    def of(cls, pair: TaskPair, band: int = FOCUS_BAND) -> GroundTruth | None:
        """The truth a :class:`~fusevis.io.tasks.TaskPair` carries (None if it has none)."""
        if pair.truth_mask is not None:
            return cls(mask=np.asarray(pair.truth_mask, bool), band=band)
        if pair.quality is not None:
            return cls(quality=tuple(np.asarray(q, np.float64) for q in pair.quality))
        return None

    def check(self, count: int, shape: tuple[int, int], source: str | None = None) -> None:
        """Raise :class:`InputError` unless this truth fits ``count`` inputs of ``shape``."""
        maps = [self.mask] if self.mask is not None else list(self.quality or ())
        if self.mask is not None and count != 2:
            raise InputError(source, f"a focus mask needs two inputs, got {count}")
        if self.quality is not None and len(self.quality) != count:
            raise InputError(source, f"{len(self.quality)} quality maps for {count} inputs")
        for array in maps:
            if np.shape(array) != tuple(shape):
                raise InputError(source, f"truth shape {np.shape(array)} differs from {shape}")


@dataclass(frozen=True)
class TruthScore:
    """How well one network's attribution agrees with the ground truth of one set.

    Attributes
    ----------
    task : str
        ``multi-focus`` or ``multi-exposure``.
    statistic : str
        ``AUC`` (multi-focus) or ``Spearman`` (multi-exposure).
    share : float or None
        The statistic of the influence share (None without influence maps; NaN when the
        scored pixels hold one class only).
    guidance : float
        The statistic of the guidance (``G1 − G2``; ``|G|`` shares for exposures).
    pixels : int
        Pixels scored.
    band : int
        Boundary band left out (multi-focus; 0 for exposures).
    """

    task: str
    statistic: str
    share: float | None
    guidance: float
    pixels: int
    band: int = 0

    def row(self) -> dict[str, float | int | str]:
        """The score as table columns."""
        if self.task == "multi-focus":
            row: dict[str, float | int | str] = {
                "truth": self.task,
                "share AUC": _cell(self.share),
                "G1-G2 AUC": self.guidance,
                "band px": self.band,
            }
        else:
            row = {
                "truth": self.task,
                "share Spearman": _cell(self.share),
                "|G| share Spearman": self.guidance,
            }
        row["pixels scored"] = self.pixels
        return row

    def meaning(self) -> str:
        """One paragraph saying what the numbers mean and what they do not."""
        return MEANING[self.task].format(band=self.band)


def _cell(value: float | None) -> float | str:
    return "" if value is None else value


def rank_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` detecting ``positive``, ties counted half.

    The Mann–Whitney statistic (mean ranks for ties): the probability that a random positive
    scores above a random negative, plus half the probability of a tie. NaN when either
    class is empty.
    """
    from scipy.stats import rankdata

    score = np.asarray(score, np.float64).ravel()
    positive = np.asarray(positive, bool).ravel()
    hits, misses = int(positive.sum()), int((~positive).sum())
    if hits == 0 or misses == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - hits * (hits + 1) / 2.0) / (hits * misses))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of ``a`` and ``b``; 0 when either is constant."""
    from scipy.stats import rankdata

    ra = rankdata(np.asarray(a, np.float64).ravel())
    rb = rankdata(np.asarray(b, np.float64).ravel())
    ra -= ra.mean()
    rb -= rb.mean()
    norm = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return 0.0 if norm == 0.0 else float((ra * rb).sum() / norm)


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels (Chebyshev distance) of a pixel of the other class."""
    from scipy.ndimage import binary_dilation

    mask = np.asarray(mask, bool)
    if width <= 0 or mask.all() or not mask.any():
        return np.zeros(mask.shape, bool)
    square = np.ones((3, 3), bool)
    near_out = binary_dilation(~mask, square, iterations=width)
    near_in = binary_dilation(mask, square, iterations=width)
    return (mask & near_out) | (~mask & near_in)


def _shares(values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each map's share of their sum (1/N where the sum is 0)."""
    stack = np.stack([np.asarray(v, np.float64) for v in values])
    total = stack.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    return list(np.where(total > 0, stack / safe, 1.0 / len(values)))


def score_maps(
    guidance: Sequence[np.ndarray],
    share: Sequence[np.ndarray] | None,
    truth: GroundTruth,
) -> TruthScore:
    """Score guidance maps (and influence shares) against ``truth``; see the module text."""
    shape = np.shape(guidance[0])
    truth.check(len(guidance), shape)  # type: ignore[arg-type]
    if truth.mask is not None:
        kept = ~boundary_band(truth.mask, truth.band)
        positive = truth.mask[kept]
        on_share = None if share is None else rank_auc(np.asarray(share[0])[kept], positive)
        difference = np.asarray(guidance[0], np.float64) - np.asarray(guidance[1], np.float64)
        return TruthScore(
            "multi-focus",
            "AUC",
            on_share,
            rank_auc(difference[kept], positive),
            int(kept.sum()),
            truth.band,
        )
    assert truth.quality is not None
    relative = _shares([np.clip(q, 0.0, None) for q in truth.quality])
    magnitude = _shares([np.abs(g) for g in guidance])

    def mean_correlation(maps: Sequence[np.ndarray]) -> float:
        return float(np.mean([rank_correlation(m, q) for m, q in zip(maps, relative, strict=True)]))

    return TruthScore(
        "multi-exposure",
        "Spearman",
        None if share is None else mean_correlation(share),
        mean_correlation(magnitude),
        int(np.prod(shape)),
    )


def score_result(result: SetResult, truth: GroundTruth) -> TruthScore:
    """Score one network's :class:`~fusevis.analysis.results.SetResult` against ``truth``."""
    return score_maps(result.guidance, result.share, truth)


def score_pair(
    model: nn.Module, pair: TaskPair, influence: bool = True, band: int = FOCUS_BAND
) -> TruthScore:
    """Fuse a synthetic set with ``model``, compute its maps and score them against the truth.

    Raises
    ------
    InputError
        When ``pair`` carries no ground truth.
    """
    from fusevis.analysis.results import analyse_set

    truth = GroundTruth.of(pair, band)
    if truth is None:
        raise InputError(pair.name, f"a {pair.task} set has no ground truth to score against")
    return score_result(analyse_set(model, pair.image_set(), influence=influence), truth)


def load_truth(
    paths: Sequence[str | PathLike[str]],
    count: int,
    shape: tuple[int, int],
    band: int = FOCUS_BAND,
    max_pixels: int | None = None,
) -> GroundTruth:
    """Read ground truth from image files for a set of ``count`` inputs of ``shape``.

    One file for two inputs is a focus mask: input 1 in focus where the value is at least
    half the file's maximum (0/255 PNGs as ``fusevis data export`` writes them). As many
    files as inputs are per-input qualities (only their ratios matter; read unscaled).
    """
    from fusevis.io import load_image

    if not paths:
        raise InputError(None, "no ground-truth files given")
    images = [load_image(p, normalize="none", max_pixels=max_pixels) for p in paths]
    for path, image in zip(paths, images, strict=True):
        if image.shape != tuple(shape):
            raise InputError(path, f"truth shape {image.shape} differs from the inputs {shape}")
        if float(np.min(image.data)) < 0:
            raise InputError(path, "ground truth holds negative values")
    if len(paths) == 1 and count == 2:
        data = np.asarray(images[0].data, np.float64)
        peak = float(data.max())
        return GroundTruth(mask=data >= peak / 2 if peak > 0 else data > 0, band=band)
    if len(paths) == count:
        return GroundTruth(quality=tuple(np.asarray(i.data, np.float64) for i in images))
    raise InputError(
        paths[0],
        f"{len(paths)} ground-truth file(s) for {count} inputs: give one focus mask "
        f"(two inputs) or one quality map per input",
    )
