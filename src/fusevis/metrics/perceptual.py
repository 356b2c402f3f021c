"""Edge- and information-fidelity metrics: Q^AB/F (Xydeas & Petrović) and VIF (Sheikh & Bovik)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from fusevis.metrics.intensity import Combine, combined, to_8bit_scale

QabfBorders = Literal["nearest", "zero"]
VifBorders = Literal["mirror", "valid"]

# Xydeas & Petrović (2000) constants.
GAMMA_G, KAPPA_G, SIGMA_G = 0.9994, -15.0, 0.5
GAMMA_A, KAPPA_A, SIGMA_A = 0.9879, -22.0, 0.8
VIF_NOISE_VARIANCE = 2.0
_EPS = 1e-10


def _sobel(image: np.ndarray, borders: QabfBorders = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Edge strength g and orientation α = arctan(s_y / s_x) (π/2 where s_x = 0)."""
    mode = "constant" if borders == "zero" else "nearest"
    sx = ndimage.sobel(image, axis=1, mode=mode)
    sy = ndimage.sobel(image, axis=0, mode=mode)
    strength = np.hypot(sx, sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        orientation = np.where(sx == 0, np.pi / 2, np.arctan(sy / np.where(sx == 0, 1, sx)))
    return strength, orientation


def edge_preservation(
    strength: np.ndarray, orientation: np.ndarray, fused: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Q^{XF} = Q_g · Q_α per pixel: how well F keeps the edges of input X."""
    g_f, a_f = fused
    larger = np.maximum(strength, g_f)
    relative_strength = np.where(
        larger > 0, np.minimum(strength, g_f) / np.where(larger > 0, larger, 1), 1.0
    )
    relative_orientation = 1 - np.abs(orientation - a_f) / (np.pi / 2)
    q_g = GAMMA_G / (1 + np.exp(KAPPA_G * (relative_strength - SIGMA_G)))
    q_a = GAMMA_A / (1 + np.exp(KAPPA_A * (relative_orientation - SIGMA_A)))
    return q_g * q_a


def q_abf(
    fused: np.ndarray, inputs: Sequence[np.ndarray], borders: QabfBorders = "nearest"
) -> float:
    """Q^AB/F = Σ_p Σ_k Q^{X_k F}(p) w_k(p) / Σ_p Σ_k w_k(p), weights w_k = g_k (L = 1).

    Sobel gradients (``scipy.ndimage.sobel``, edges replicated) on the 0-255 scale. Where
    both strengths are 0 the strength ratio counts as 1 (a weight of 0 removes it anyway).
    The constants (Γ_g 0.9994, κ_g −15, σ_g 0.5, Γ_α 0.9879, κ_α −22, σ_α 0.8) put the best
    possible value, F = X_k everywhere, at Q_g(1)·Q_α(1) ≈ 0.9753, not 1. With
    ``borders="zero"`` the Sobel filters see zeros outside the image (MATLAB's
    ``conv2(..., 'same')``, as VIFB's and CDDFuse's evaluators do), so the image's own
    border is an edge.
    """
    fused_edges = _sobel(to_8bit_scale(fused), borders)
    numerator, denominator = 0.0, 0.0
    for x in inputs:
        strength, orientation = _sobel(to_8bit_scale(x), borders)
        numerator += float(np.sum(edge_preservation(strength, orientation, fused_edges) * strength))
        denominator += float(np.sum(strength))
    return numerator / denominator if denominator > 0 else 0.0


def vif_pixel(
    reference: np.ndarray, distorted: np.ndarray, borders: VifBorders = "mirror"
) -> float:
    """VIFp: pixel-domain visual information fidelity (Sheikh & Bovik 2006), 4 scales.

    At scale s (1-4) local statistics use a Gaussian window of N = 2^(5−s) + 1 pixels,
    σ = N / 5 (``scipy.ndimage.gaussian_filter``, mirrored edges); between scales both
    images are smoothed and subsampled by 2. Noise variance σ_n² = 2 on the 0-255 scale.
    Equal images give exactly 1. With ``borders="valid"`` every filtering keeps only the
    windows inside the image (``convolve2d(..., 'valid')`` of the MATLAB original and of
    CDDFuse's evaluator), so each scale's image shrinks by N − 1 before subsampling.
    """
    ref, dist = to_8bit_scale(reference), to_8bit_scale(distorted)
    numerator, denominator = 0.0, 0.0
    for scale in range(1, 5):
        size = 2 ** (5 - scale) + 1
        sigma = size / 5.0

        def local(image: np.ndarray, sigma: float = sigma, size: int = size) -> np.ndarray:
            filtered = ndimage.gaussian_filter(image, sigma, truncate=(size // 2) / sigma)
            if borders == "valid":
                r = size // 2
                filtered = filtered[r : filtered.shape[0] - r, r : filtered.shape[1] - r]
            return filtered

        if scale > 1:
            ref, dist = local(ref)[::2, ::2], local(dist)[::2, ::2]
        if min(ref.shape) <= (2 * (size // 2) if borders == "valid" else 0):
            break  # no whole window fits in the image at this scale: nothing more to add
        mu1, mu2 = local(ref), local(dist)
        sigma1_sq = np.maximum(local(ref * ref) - mu1 * mu1, 0)
        sigma2_sq = np.maximum(local(dist * dist) - mu2 * mu2, 0)
        sigma12 = local(ref * dist) - mu1 * mu2
        gain = sigma12 / (sigma1_sq + _EPS)
        noise = sigma2_sq - gain * sigma12
        flat_ref = sigma1_sq < _EPS
        gain[flat_ref], noise[flat_ref], sigma1_sq[flat_ref] = 0, sigma2_sq[flat_ref], 0
        flat_dist = sigma2_sq < _EPS
        gain[flat_dist], noise[flat_dist] = 0, 0
        negative = gain < 0
        noise[negative], gain[negative] = sigma2_sq[negative], 0
        noise = np.maximum(noise, _EPS)
        numerator += float(np.sum(np.log10(1 + gain**2 * sigma1_sq / (noise + VIF_NOISE_VARIANCE))))
        denominator += float(np.sum(np.log10(1 + sigma1_sq / VIF_NOISE_VARIANCE)))
    return numerator / denominator if denominator > 0 else 1.0


def vif(
    fused: np.ndarray,
    inputs: Sequence[np.ndarray],
    borders: VifBorders = "mirror",
    combine: Combine = "sum",
) -> float:
    """VIF = Σ_k VIFp(X_k → F), **summed** over the inputs (as MI is); ``"mean"`` averages."""
    return combined([vif_pixel(x, fused, borders) for x in inputs], combine)
