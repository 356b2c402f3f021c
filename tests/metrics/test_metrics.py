"""Fusion metrics: analytically known cases and independent computations."""

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as torch_ssim
from scipy.stats import entropy as scipy_entropy
from skimage.metrics import peak_signal_noise_ratio

from fusevis.errors import InputError
from fusevis.metrics import (
    average_gradient,
    correlation_coefficient,
    entropy,
    fusion_metrics,
    mutual_information,
    mutual_information_pair,
    psnr,
    q_abf,
    scd,
    spatial_frequency,
    ssim_per_input,
    standard_deviation,
    vif,
    vif_pixel,
)
from fusevis.metrics.perceptual import (
    GAMMA_A,
    GAMMA_G,
    KAPPA_A,
    KAPPA_G,
    SIGMA_A,
    SIGMA_G,
)


def textured(seed: int = 0, size: int = 64) -> np.ndarray:
    generator = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.25 * np.sin(6 * rows) * np.cos(9 * cols)
    return np.clip(base + 0.1 * generator.random((size, size)), 0, 1)


def test_constant_image_has_no_information_spread_or_detail() -> None:
    flat = np.full((32, 32), 0.4)
    assert entropy(flat) == 0.0
    assert standard_deviation(flat) == 0.0
    assert spatial_frequency(flat) == 0.0
    assert average_gradient(flat) == 0.0
    assert mutual_information_pair(flat, textured(size=32)) == pytest.approx(0.0, abs=1e-12)


def test_entropy_of_half_black_half_white_is_one_bit_and_matches_scipy() -> None:
    image = np.zeros((16, 16))
    image[:, 8:] = 1.0
    assert entropy(image) == pytest.approx(1.0)
    x = textured()
    counts = np.bincount(np.round(x * 255).astype(np.uint8).ravel(), minlength=256)
    assert entropy(x) == pytest.approx(scipy_entropy(counts, base=2))


def test_standard_deviation_is_on_the_8bit_scale() -> None:
    image = np.zeros((10, 10))
    image[::2] = 1.0
    assert standard_deviation(image) == pytest.approx(127.5)


def test_spatial_frequency_and_gradient_of_stripes_and_ramps() -> None:
    stripes = np.tile([0.0, 1.0], (8, 4))  # columns alternate 0 / 255
    assert spatial_frequency(stripes) == pytest.approx(255.0)
    ramp = np.tile(np.arange(20) / 19 * 0.95, (12, 1))  # Δx constant, Δy = 0
    step = 255 * 0.95 / 19
    assert average_gradient(ramp) == pytest.approx(step / math.sqrt(2))
    assert spatial_frequency(ramp) == pytest.approx(step)


def test_shifted_copy_keeps_histogram_metrics_and_loses_correlation() -> None:
    x = textured()
    shifted = np.roll(x, 5, axis=1)
    assert entropy(shifted) == pytest.approx(entropy(x))
    assert standard_deviation(shifted) == pytest.approx(standard_deviation(x))
    assert correlation_coefficient(x, [x]) == pytest.approx(1.0)
    assert correlation_coefficient(shifted, [x]) < 0.9
    assert mutual_information_pair(shifted, x) < mutual_information_pair(x, x)


def test_identical_images_give_the_ideal_values() -> None:
    x = textured()
    assert mutual_information(x, [x, x]) == pytest.approx(2 * entropy(x))
    assert ssim_per_input(x, [x]) == [pytest.approx(1.0)]
    assert psnr(x, [x]) == math.inf
    assert vif_pixel(x, x) == pytest.approx(1.0)
    assert vif(x, [x, x]) == pytest.approx(2.0)
    best = (
        GAMMA_G
        / (1 + math.exp(KAPPA_G * (1 - SIGMA_G)))
        * (GAMMA_A / (1 + math.exp(KAPPA_A * (1 - SIGMA_A))))
    )
    assert q_abf(x, [x]) == pytest.approx(best, rel=1e-9)
    assert q_abf(x, [x, x]) == pytest.approx(best, rel=1e-9)
    assert q_abf(np.full_like(x, 0.5), [x]) < 0.05  # every edge lost


def test_psnr_agrees_with_scikit_image_for_one_input() -> None:
    a, b = textured(0), textured(1)
    expected = peak_signal_noise_ratio(a * 255, b * 255, data_range=255)
    assert psnr(b, [a]) == pytest.approx(expected)


def test_ssim_agrees_with_pytorch_msssim() -> None:
    a, b = textured(0), textured(3)
    ours = ssim_per_input(a, [b])[0]
    theirs = torch_ssim(
        torch.tensor(a)[None, None], torch.tensor(b)[None, None], data_range=1.0
    ).item()
    assert ours == pytest.approx(theirs, abs=2e-3)


def test_scd_of_the_sum_of_two_inputs() -> None:
    a, b = textured(0) / 2, textured(5) / 2
    # F = A + B: F − B = A and F − A = B, so each correlation is 1.
    assert scd(a + b, [a, b]) == pytest.approx(2.0)


def test_fusion_metrics_table_and_bad_input() -> None:
    a, b = textured(0), textured(2)
    table = fusion_metrics((a + b) / 2, [a, b])
    assert {
        "EN",
        "SD",
        "SF",
        "AG",
        "MI",
        "SSIM",
        "SSIM_1",
        "SSIM_2",
        "QABF",
        "VIF",
        "SCD",
        "CC",
        "PSNR",
    } == set(table)
    assert table["SSIM"] == pytest.approx((table["SSIM_1"] + table["SSIM_2"]) / 2)
    with pytest.raises(InputError, match=r"input 2: shape \(3, 3\) differs"):
        fusion_metrics(a, [a, np.zeros((3, 3))])
    bad = a.copy()
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="fused image: contains NaN"):
        fusion_metrics(bad, [a, b])
