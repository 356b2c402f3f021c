"""Metric conventions: the choices on which published fusion evaluators disagree, as presets.

Fusion papers quote EN, MI, SSIM, VIF, ... from a handful of evaluation scripts that name
the same metric but compute it differently: MI in bits or nats, summed or averaged over the
sources; SSIM with a 7×7 box or an 11×11 Gaussian window and a different stabilising
constant; images rounded to 8 bits or not; colour measured per RGB channel or on grey. A
:class:`MetricConvention` records every such choice, and :data:`CONVENTIONS` holds the named
presets :func:`fusevis.metrics.fusion_metrics` and ``fusevis metrics --convention`` accept:

``fusevis``
    FuseVis's own (the default, documented with each metric function).
``cddfuse``
    The Python evaluator made popular by CDDFuse (Zhao et al., CVPR 2023) and copied by many
    repositories since: ``utils/Evaluator.py`` and ``test_MIF.py`` / ``test_IVF.py`` of
    github.com/Zhaozixiang1228/MMIF-CDDFuse (commit 40de058), run with the scikit-image
    0.19.2 that its ``requirements.txt`` pins.
``vifb``
    VIFB's MATLAB toolbox (Zhang, Ye & Xiao, CVPRW 2020): ``metrics/metrics*.m`` of
    github.com/xingchenzhang/VIFB (commit 5d29ee7).

docs/metrics.md tabulates the presets (its table is :func:`convention_table`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np

from fusevis.errors import InputError
from fusevis.metrics.intensity import (
    GREY_LEVELS,
    AgDifferences,
    AgDivisor,
    Combine,
    SfDivisor,
    log_unit,
)
from fusevis.metrics.perceptual import QabfBorders, VifBorders
from fusevis.metrics.reference import PsnrError, PsnrPeak, SsimWindow, gaussian_window_size

Colour = Literal["luminance", "per-channel"]

PAPER_LUMINANCE = (0.2989, 0.5870, 0.1140)
"""Grey = 0.2989 R + 0.5870 G + 0.1140 B: FuseVis's readers (the paper's) and MATLAB's
``rgb2gray``; the same as :data:`fusevis.io.color.LUMINANCE_WEIGHTS`."""
BT601_LUMINANCE = (0.299, 0.587, 0.114)
"""Grey = 0.299 R + 0.587 G + 0.114 B: OpenCV's ``COLOR_BGR2GRAY`` (ITU-R BT.601)."""

_CHOICES: dict[str, tuple[object, ...]] = {
    "colour": get_args(Colour),
    "mi_combine": get_args(Combine),
    "ssim_window": get_args(SsimWindow),
    "ssim_combine": get_args(Combine),
    "vif_borders": get_args(VifBorders),
    "vif_combine": get_args(Combine),
    "qabf_borders": get_args(QabfBorders),
    "sf_divisor": get_args(SfDivisor),
    "ag_differences": get_args(AgDifferences),
    "ag_divisor": get_args(AgDivisor),
    "psnr_peak": get_args(PsnrPeak),
    "psnr_error": get_args(PsnrError),
}


@dataclass(frozen=True)
class MetricConvention:
    """Every choice that changes a fusion metric's value between published evaluators.

    The defaults are FuseVis's own convention (the ``fusevis`` preset). Images are given
    to :func:`fusevis.metrics.fusion_metrics` as floats in [0, 1]; all metrics measure them
    on the 8-bit scale (× 255) unless stated.

    Attributes
    ----------
    name : str
        The preset's name (what ``--convention`` takes).
    description : str
        One line: whose evaluator this reproduces.
    source : str
        Where the choices were read (files and commit).
    colour : {"luminance", "per-channel"}
        RGB images (H, W, 3): ``"luminance"`` reduces every one to grey with
        ``luminance_weights`` first; ``"per-channel"`` measures each channel of a colour
        fused image against the same channel of colour inputs (grey inputs as they are)
        and averages the three tables. A grey fused image reduces colour inputs to grey.
    luminance_weights : tuple of float
        R, G, B weights of the grey reduction.
    round_to_8bit : bool
        Round every image (after the grey reduction) to the nearest of the 256 levels of an
        8-bit file before any metric, as evaluators that read PNG files see them.
    entropy_base, mi_base : float
        Base of the logarithm of EN and of MI: 2 gives bits, e nats.
    mi_minmax : bool
        Min-max rescale each image of a pair to [0, 1] before binning MI's histogram
        (VIFB), instead of clipping to [0, 1].
    mi_combine, ssim_combine, vif_combine : {"sum", "mean"}
        Whether MI(F; X_k), SSIM(F, X_k), VIF(X_k → F) are summed or averaged over the
        inputs. A sum over two inputs is twice the mean (SSIM up to 2, not 1).
    ssim_window : {"gaussian", "uniform"}
        SSIM's local window; ``ssim_size`` taps square (a Gaussian of σ ``ssim_sigma``
        spans 3.5 σ each side, so 11 taps for σ = 1.5).
    ssim_size : int
    ssim_sigma : float
    ssim_sample_covariance : bool
        Local variances with N − 1 (scikit-image's default) or N (Wang et al.).
    ssim_data_range : float
        L in C1 = (0.01 L)², C2 = (0.03 L)², on the 0-255 scale: 255 for 8-bit data; 2.0
        is what scikit-image up to 0.19 assumed for any float image when no
        ``data_range`` was given (its float range is −1..1), which shrinks the constants
        to almost nothing.
    vif_borders : {"mirror", "valid"}
        VIF's Gaussian filtering: mirrored image edges or only windows inside the image.
    qabf_borders : {"nearest", "zero"}
        Q^AB/F's Sobel filtering: edge pixels replicated, or zeros outside the image (the
        border then counts as an edge).
    sf_divisor : {"differences", "pixels"}
        SF's squared differences divided by their count, or by M·N.
    ag_differences : {"forward", "central"}
        AG's gradients: forward differences, or :func:`numpy.gradient`.
    ag_divisor : {"values", "(M-1)(N-1)"}
        AG's sum of magnitudes divided by their count, or by (M−1)(N−1).
    psnr_peak : {"255", "fused max"}
        The peak of PSNR: 255, or the fused image's maximum.
    psnr_error : {"mse", "rss/pixels"}
        The error of PSNR per input: the mean squared error, or VIFB's root of the sum of
        squares divided by the pixel count; averaged over the inputs either way.
    """

    name: str
    description: str = ""
    source: str = ""
    colour: Colour = "luminance"
    luminance_weights: tuple[float, float, float] = PAPER_LUMINANCE
    round_to_8bit: bool = False
    entropy_base: float = 2.0
    mi_base: float = 2.0
    mi_minmax: bool = False
    mi_combine: Combine = "sum"
    ssim_window: SsimWindow = "gaussian"
    ssim_size: int = 11
    ssim_sigma: float = 1.5
    ssim_sample_covariance: bool = False
    ssim_data_range: float = GREY_LEVELS
    ssim_combine: Combine = "mean"
    vif_borders: VifBorders = "mirror"
    vif_combine: Combine = "sum"
    qabf_borders: QabfBorders = "nearest"
    sf_divisor: SfDivisor = "differences"
    ag_differences: AgDifferences = "forward"
    ag_divisor: AgDivisor = "values"
    psnr_peak: PsnrPeak = "255"
    psnr_error: PsnrError = "mse"

    def __post_init__(self) -> None:
        where = f"metric convention {self.name!r}"
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                known = ", ".join(repr(a) for a in allowed)
                raise InputError(where, f"{key} is {value!r}; use one of {known}")
        for key in ("entropy_base", "mi_base"):
            base = getattr(self, key)
            if not (base > 0 and base != 1 and math.isfinite(base)):
                raise InputError(where, f"{key} is {base!r}; a logarithm needs a base > 0, ≠ 1")
        if not self.ssim_data_range > 0:
            raise InputError(where, f"ssim_data_range is {self.ssim_data_range!r}; use > 0")
        if self.ssim_window == "uniform" and not (self.ssim_size >= 3 and self.ssim_size % 2):
            raise InputError(where, f"ssim_size is {self.ssim_size!r}; use an odd size ≥ 3")
        if self.ssim_window == "gaussian" and self.ssim_size != gaussian_window_size(
            self.ssim_sigma
        ):
            raise InputError(
                where,
                f"a Gaussian SSIM window of sigma {self.ssim_sigma:g} has "
                f"{gaussian_window_size(self.ssim_sigma)} taps, not {self.ssim_size}",
            )
        if len(self.luminance_weights) != 3:
            raise InputError(where, "luminance_weights needs three weights (R, G, B)")

    def grey(self, image: np.ndarray) -> np.ndarray:
        """An (H, W, 3) image reduced to grey with this convention's weights; grey as is."""
        if image.ndim == 2:
            return image
        return np.asarray(image[..., :3], np.float64) @ np.asarray(self.luminance_weights)

    def planes(
        self, fused: np.ndarray, inputs: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """The (fused, inputs) grey planes to measure: one pair, or one per RGB channel.

        Images are (H, W) grey or (H, W, 3) RGB floats in [0, 1] of the same (H, W).
        """
        if self.colour == "per-channel" and fused.ndim == 3:
            pairs = [
                (fused[..., c], [x[..., c] if x.ndim == 3 else x for x in inputs]) for c in range(3)
            ]
        else:
            pairs = [(self.grey(fused), [self.grey(x) for x in inputs])]
        if self.round_to_8bit:
            pairs = [(rounded(f), [rounded(x) for x in xs]) for f, xs in pairs]
        return pairs

    def meaning(self, metric: str, count: int) -> str:
        """What the value of ``metric`` means under this convention, for ``count`` inputs."""
        over = f"over the {count} input{'s' if count != 1 else ''}"
        how = {"sum": "summed " + over, "mean": "averaged " + over}
        if metric.startswith("SSIM_"):
            return f"SSIM of F and input {metric[5:]}"
        if metric == "MI":
            rescale = ", each image min-max rescaled" if self.mi_minmax else ""
            unit = log_unit(self.mi_base)
            return (
                f"mutual information of F and each input in {unit}{rescale}, "
                + (how[self.mi_combine])
            )
        if metric == "SSIM":
            window = (
                f"{self.ssim_size}x{self.ssim_size} Gaussian (sigma {self.ssim_sigma:g})"
                if self.ssim_window == "gaussian"
                else f"{self.ssim_size}x{self.ssim_size} uniform"
            )
            return (
                f"SSIM, {window} window, L = {self.ssim_data_range:g}, " + (how[self.ssim_combine])
            )
        if metric == "VIF":
            return f"visual information fidelity (1 where F = X_k), {how[self.vif_combine]}"
        if metric == "EN":
            return f"entropy of F's 256-level histogram in {log_unit(self.entropy_base)}"
        if metric == "SF":
            divisor = "difference count" if self.sf_divisor == "differences" else "M·N"
            return f"spatial frequency of F, 0-255 scale, squares ÷ {divisor}"
        if metric == "AG":
            divisor = "" if self.ag_divisor == "values" else ", sum ÷ (M-1)(N-1)"
            return f"average gradient of F, 0-255 scale, {self.ag_differences} differences{divisor}"
        if metric == "QABF":
            return f"edge preservation Q^AB/F (best 0.975), Sobel borders {self.qabf_borders}"
        if metric == "PSNR":
            peak = "255" if self.psnr_peak == "255" else "max F"
            error = "MSE" if self.psnr_error == "mse" else "sqrt(Σ squares) ÷ M·N"
            return f"dB, peak {peak}, error {error} averaged {over}"
        return _FIXED_MEANINGS.get(metric, "")

    def summary(self) -> str:
        """One line naming the convention and its main choices (printed with results)."""
        window = f"{self.ssim_size}x{self.ssim_size} {self.ssim_window}"
        mi = f"MI in {log_unit(self.mi_base)} {'summed' if self.mi_combine == 'sum' else 'mean'}"
        ssim = f"SSIM {window} {'summed' if self.ssim_combine == 'sum' else 'mean'}"
        parts = [mi + (" after min-max" if self.mi_minmax else ""), ssim]
        parts.append("rounded to 8 bits" if self.round_to_8bit else "not rounded")
        parts.append("colour per RGB channel" if self.colour == "per-channel" else "colour on Y")
        return f"{self.name}: " + "; ".join(parts)


_FIXED_MEANINGS = {
    "SD": "standard deviation of F, 0-255 scale",
    "SCD": "sum of the correlations of differences r(F − other inputs, X_k)",
    "CC": "Pearson correlation of F and each input, averaged",
}


def rounded(image: np.ndarray) -> np.ndarray:
    """A [0, 1] image clipped and rounded to the 256 levels of an 8-bit file (as k / 255)."""
    levels = np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * GREY_LEVELS)
    return levels / GREY_LEVELS


FUSEVIS = MetricConvention(
    name="fusevis",
    description="FuseVis's own convention (the default)",
    source="fusevis.metrics: each metric's docstring",
)

CDDFUSE = MetricConvention(
    name="cddfuse",
    description="CDDFuse's Python evaluator (utils/Evaluator.py), copied by many repositories",
    source=(
        "github.com/Zhaozixiang1228/MMIF-CDDFuse at 40de058: utils/Evaluator.py, "
        "test_MIF.py, test_IVF.py, requirements.txt (scikit-image 0.19.2)"
    ),
    luminance_weights=BT601_LUMINANCE,
    round_to_8bit=True,
    mi_base=math.e,
    ssim_window="uniform",
    ssim_size=7,
    ssim_sample_covariance=True,
    ssim_data_range=2.0,
    ssim_combine="sum",
    vif_borders="valid",
    qabf_borders="zero",
    ag_differences="central",
    psnr_peak="fused max",
)

VIFB = MetricConvention(
    name="vifb",
    description="VIFB's MATLAB toolbox (visible-infrared fusion benchmark)",
    source="github.com/xingchenzhang/VIFB at 5d29ee7: metrics/metrics*.m",
    colour="per-channel",
    round_to_8bit=True,
    mi_base=math.e,
    mi_minmax=True,
    ssim_combine="sum",
    qabf_borders="zero",
    sf_divisor="pixels",
    ag_differences="central",
    ag_divisor="(M-1)(N-1)",
    psnr_error="rss/pixels",
)

CONVENTIONS: Mapping[str, MetricConvention] = MappingProxyType(
    {c.name: c for c in (FUSEVIS, CDDFUSE, VIFB)}
)
"""The named presets, ``fusevis`` (the default) first."""

DEFAULT_CONVENTION = "fusevis"


def get_convention(convention: str | MetricConvention) -> MetricConvention:
    """A preset by name (case-insensitive), or ``convention`` itself if it is one.

    Raises
    ------
    InputError
        For an unknown name, listing the known ones.
    """
    if isinstance(convention, MetricConvention):
        return convention
    if isinstance(convention, str) and convention.lower() in CONVENTIONS:
        return CONVENTIONS[convention.lower()]
    known = ", ".join(CONVENTIONS)
    raise InputError(None, f"unknown metric convention {convention!r} (known: {known})")


def _value(convention: MetricConvention, key: str) -> str:
    value = getattr(convention, key)
    if key == "ssim_sigma" and convention.ssim_window == "uniform":
        return "—"
    if key in ("entropy_base", "mi_base"):
        return f"{log_unit(value)} (base {'e' if value == math.e else f'{value:g}'})"
    if key == "luminance_weights":
        return " / ".join(f"{w:g}" for w in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def convention_table(conventions: Sequence[MetricConvention] | None = None) -> str:
    """A Markdown table of every choice (rows) of the presets (columns)."""
    chosen = list(CONVENTIONS.values()) if conventions is None else list(conventions)
    skip = {"name", "description", "source"}
    header = "| choice | " + " | ".join(f"`{c.name}`" for c in chosen) + " |"
    rule = "| --- |" + " --- |" * len(chosen)
    rows = [header, rule]
    for item in fields(MetricConvention):
        if item.name in skip:
            continue
        values = " | ".join(_value(c, item.name) for c in chosen)
        rows.append(f"| `{item.name}` | {values} |")
    return "\n".join(rows) + "\n"
