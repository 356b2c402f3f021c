"""Metric conventions: each choice on a case worked out by hand, and the presets checked
against independent computations (scikit-image, SciPy, scikit-learn) of the same thing."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import convolve2d
from scipy.stats import entropy as scipy_entropy
from skimage.metrics import structural_similarity
from sklearn.metrics import mutual_info_score

from fusevis.errors import InputError
from fusevis.metrics import (
    CONVENTIONS,
    MetricConvention,
    convention_table,
    fusion_metrics,
    get_convention,
    mutual_information,
    q_abf,
    ssim_per_input,
    vif,
)
from fusevis.metrics.conventions import BT601_LUMINANCE, PAPER_LUMINANCE
from fusevis.metrics.perceptual import (
    GAMMA_A,
    GAMMA_G,
    KAPPA_A,
    KAPPA_G,
    SIGMA_A,
    SIGMA_G,
    vif_pixel,
)

FUSEVIS, CDDFUSE, VIFB = CONVENTIONS["fusevis"], CONVENTIONS["cddfuse"], CONVENTIONS["vifb"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
BEST_QABF = (
    GAMMA_G
    / (1 + math.exp(KAPPA_G * (1 - SIGMA_G)))
    * GAMMA_A
    / (1 + math.exp(KAPPA_A * (1 - SIGMA_A)))
)


def textured(seed: int, size: int = 48, levels: bool = True) -> np.ndarray:
    """A smooth pattern with noise in [0, 1], on the 8-bit levels (k / 255) by default."""
    generator = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.3 * np.sin((5 + seed) * rows) * np.cos((7 + seed) * cols)
    image = np.clip(base + 0.15 * generator.random((size, size)), 0, 1)
    return np.round(image * 255) / 255 if levels else image


def halves(low: float, high: float, size: int = 32) -> np.ndarray:
    """Left half ``low``, right half ``high`` (values on the 8-bit scale, returned / 255)."""
    image = np.full((size, size), low)
    image[:, size // 2 :] = high
    return image / 255


# The presets -------------------------------------------------------------------------


def test_fusevis_preset_is_the_default_and_the_metric_functions_defaults() -> None:
    f, a, b = textured(0, levels=False), textured(1, levels=False), textured(2, levels=False)
    default = fusion_metrics(f, [a, b])
    assert fusion_metrics(f, [a, b], "fusevis") == default
    assert fusion_metrics(f, [a, b], FUSEVIS) == default
    assert fusion_metrics(f, [a, b], MetricConvention("mine")) == default  # defaults = fusevis
    assert default["MI"] == mutual_information(f, [a, b])
    assert default["VIF"] == vif(f, [a, b])
    assert default["QABF"] == q_abf(f, [a, b])
    assert default["SSIM"] == np.mean(ssim_per_input(f, [a, b]))


def test_presets_hold_the_evaluators_choices() -> None:
    assert list(CONVENTIONS) == ["fusevis", "cddfuse", "vifb"]
    assert (CDDFUSE.mi_base, CDDFUSE.mi_combine, CDDFUSE.round_to_8bit) == (math.e, "sum", True)
    assert (CDDFUSE.ssim_window, CDDFUSE.ssim_size, CDDFUSE.ssim_combine) == ("uniform", 7, "sum")
    assert (CDDFUSE.ssim_sample_covariance, CDDFUSE.ssim_data_range) == (True, 2.0)
    assert (CDDFUSE.vif_combine, CDDFUSE.luminance_weights) == ("sum", BT601_LUMINANCE)
    assert (VIFB.mi_base, VIFB.mi_minmax, VIFB.colour) == (math.e, True, "per-channel")
    assert (VIFB.ssim_window, VIFB.ssim_size, VIFB.ssim_sigma) == ("gaussian", 11, 1.5)
    assert (FUSEVIS.mi_base, FUSEVIS.ssim_combine, FUSEVIS.round_to_8bit) == (2.0, "mean", False)
    with pytest.raises(TypeError):
        CONVENTIONS["extra"] = FUSEVIS  # type: ignore[index]
    with pytest.raises(AttributeError):
        FUSEVIS.mi_base = math.e  # type: ignore[misc]


def test_paper_luminance_is_the_readers() -> None:
    from fusevis.io.color import LUMINANCE_WEIGHTS

    assert tuple(LUMINANCE_WEIGHTS) == PAPER_LUMINANCE


def test_unknown_names_and_bad_choices_are_one_line_errors() -> None:
    a = textured(0)
    with pytest.raises(InputError, match=r"unknown metric convention 'matlab' \(known: fusevis, "):
        fusion_metrics(a, [a], "matlab")
    assert get_convention("CDDFuse") is CDDFUSE
    with pytest.raises(InputError, match="mi_combine is 'median'; use one of 'sum', 'mean'"):
        MetricConvention("odd", mi_combine="median")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="sigma 1.5 has 11 taps, not 7"):
        MetricConvention("odd", ssim_size=7)
    with pytest.raises(InputError, match="a logarithm needs a base"):
        MetricConvention("odd", mi_base=1.0)
    with pytest.raises(InputError, match=r"fused image: 8x8 is smaller than the 11x11 SSIM"):
        fusion_metrics(np.zeros((8, 8)), [np.zeros((8, 8))])
    with pytest.raises(InputError, match=r"input 1: expected an \(H, W\) grey or \(H, W, 3\)"):
        fusion_metrics(a, [np.zeros((48, 48, 4))])


# Each choice, on a case worked out by hand ---------------------------------------------


def test_log_base_bits_or_nats() -> None:
    x = halves(0, 255)  # two equally likely levels: 1 bit = ln 2 nats of entropy
    assert fusion_metrics(x, [x, x], "fusevis")["MI"] == pytest.approx(2.0)
    assert fusion_metrics(x, [x, x], "cddfuse")["MI"] == pytest.approx(2 * math.log(2))
    assert fusion_metrics(x, [x, x], "vifb")["MI"] == pytest.approx(2 * math.log(2))
    for name in CONVENTIONS:
        assert fusion_metrics(x, [x], name)["EN"] == pytest.approx(1.0)  # EN: bits everywhere
    assert fusion_metrics(x, [x], replace(FUSEVIS, entropy_base=math.e))["EN"] == pytest.approx(
        math.log(2)
    )


def test_sum_or_mean_over_the_inputs() -> None:
    x = textured(3)
    fusevis, cddfuse = fusion_metrics(x, [x, x], "fusevis"), fusion_metrics(x, [x, x], "cddfuse")
    assert fusevis["SSIM"] == pytest.approx(1.0) and cddfuse["SSIM"] == pytest.approx(2.0)
    assert fusion_metrics(x, [x, x], "vifb")["SSIM"] == pytest.approx(2.0)
    assert fusevis["VIF"] == pytest.approx(2.0) and cddfuse["VIF"] == pytest.approx(2.0)
    averaged = fusion_metrics(x, [x, x], replace(FUSEVIS, vif_combine="mean", mi_combine="mean"))
    assert averaged["VIF"] == pytest.approx(1.0)
    assert averaged["MI"] == pytest.approx(fusevis["MI"] / 2)


def _gaussian_weights(size: int, sigma: float) -> np.ndarray:
    offsets = np.arange(size) - size // 2
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


@pytest.mark.parametrize("name", ["fusevis", "cddfuse", "vifb"])
def test_window_covariance_and_constant_on_a_ramp_by_hand(name: str) -> None:
    """A = 4j along each row, F = 2A. Every window's means are its centre values μ and 2μ,
    its variances s and 4s, its covariance 2s, with s = 16 Σ w_i i² (× N/(N−1) for sample
    covariances), so SSIM = mean over the valid centres of l(μ, 2μ) · (4s + C2) / (5s + C2).
    """
    convention = CONVENTIONS[name]
    a = np.tile(4.0 * np.arange(32), (32, 1)) / 255
    size = convention.ssim_size
    weights = (
        _gaussian_weights(size, convention.ssim_sigma)
        if convention.ssim_window == "gaussian"
        else np.full(size, 1 / size)
    )
    offsets = np.arange(size) - size // 2
    s = 16 * np.sum(weights * offsets**2)
    if convention.ssim_sample_covariance:
        s *= size**2 / (size**2 - 1)
    c1, c2 = (0.01 * convention.ssim_data_range) ** 2, (0.03 * convention.ssim_data_range) ** 2
    mu = 4.0 * np.arange(size // 2, 32 - size // 2)  # the centres of whole windows
    luminance = (2 * mu * 2 * mu + c1) / (mu**2 + 4 * mu**2 + c1)
    expected = np.mean(luminance) * (4 * s + c2) / (5 * s + c2)
    assert fusion_metrics(2 * a, [a], convention)["SSIM"] == pytest.approx(expected, rel=1e-9)


def test_data_range_of_the_ssim_constants_on_flat_images() -> None:
    f, a = np.full((32, 32), 128 / 255), np.full((32, 32), 64 / 255)
    for name, constant in (("fusevis", 255.0), ("cddfuse", 2.0)):
        c1 = (0.01 * constant) ** 2
        expected = (2 * 128 * 64 + c1) / (128**2 + 64**2 + c1)
        assert fusion_metrics(f, [a], name)["SSIM"] == pytest.approx(expected, rel=1e-12)


def test_rounding_to_8_bits() -> None:
    x = np.tile([100.4, 100.6], (32, 16)) / 255  # rounds to 100 and 101
    assert fusion_metrics(x, [x], "fusevis")["SD"] == pytest.approx(0.1)
    assert fusion_metrics(x, [x], "cddfuse")["SD"] == pytest.approx(0.5)
    assert fusion_metrics(x, [x], replace(FUSEVIS, round_to_8bit=True))["SD"] == pytest.approx(0.5)


def test_minmax_rescaling_before_mi() -> None:
    x = halves(100.2, 100.4)  # one 8-bit level, two once stretched to 0 and 255
    assert fusion_metrics(x, [x], "fusevis")["MI"] == pytest.approx(0.0, abs=1e-12)
    assert fusion_metrics(x, [x], replace(FUSEVIS, mi_minmax=True))["MI"] == pytest.approx(1.0)
    assert fusion_metrics(x, [x], "vifb")["MI"] == pytest.approx(0.0, abs=1e-12)  # 8-bit file
    unrounded = replace(VIFB, round_to_8bit=False)
    assert fusion_metrics(x, [x], unrounded)["MI"] == pytest.approx(math.log(2))


def test_colour_per_channel_or_on_luminance() -> None:
    fused = np.zeros((32, 32, 3))
    fused[..., 0] = 0.5  # R flat: 0 bits; G and B two halves: 1 bit each
    fused[:, 16:, 1:] = 1.0
    assert fusion_metrics(fused, [fused], "vifb")["EN"] == pytest.approx(2 / 3)
    assert fusion_metrics(fused, [fused], "fusevis")["EN"] == pytest.approx(1.0)  # Y: 2 levels
    red = np.zeros((32, 32, 3))
    red[..., 0] = 1.0
    ((cdd, _),) = CDDFUSE.planes(red, [red])
    ((own, _),) = FUSEVIS.planes(red, [red])
    assert cdd[0, 0] * 255 == 76.0  # round(0.299 · 255) as OpenCV's grey, rounded
    assert own[0, 0] * 255 == pytest.approx(0.2989 * 255)


def test_per_channel_is_the_mean_of_the_channels_with_grey_inputs_reused() -> None:
    colour = np.stack([textured(4), textured(5), textured(6)], axis=-1)
    grey = textured(7)
    fused = (colour + grey[..., None]) / 2
    table = fusion_metrics(fused, [colour, grey], "vifb")
    channels = [fusion_metrics(fused[..., c], [colour[..., c], grey], "vifb") for c in range(3)]
    for key, value in table.items():
        assert value == pytest.approx(np.mean([t[key] for t in channels]), rel=1e-12), key


def test_qabf_borders_zero_make_the_image_border_an_edge() -> None:
    flat = np.full((32, 32), 0.5)
    assert fusion_metrics(flat, [flat], "fusevis")["QABF"] == 0.0  # no edge anywhere
    assert fusion_metrics(flat, [flat], "cddfuse")["QABF"] == pytest.approx(BEST_QABF)


def test_spatial_frequency_divisor() -> None:
    stripes = np.tile([0.0, 1.0], (32, 16))  # columns alternate 0 / 255
    assert fusion_metrics(stripes, [stripes], "fusevis")["SF"] == pytest.approx(255.0)
    assert fusion_metrics(stripes, [stripes], "vifb")["SF"] == pytest.approx(
        255 * math.sqrt(31 / 32)
    )


def test_average_gradient_differences_and_divisor() -> None:
    step = np.zeros((32, 40))
    step[:, 20:] = 1.0  # one jump of 255 per row
    assert fusion_metrics(step, [step], "fusevis")["AG"] == pytest.approx(255 / math.sqrt(2) / 39)
    assert fusion_metrics(step, [step], "cddfuse")["AG"] == pytest.approx(255 / math.sqrt(2) / 40)
    # VIFB: central differences (two halves of 127.5 per row), sum ÷ (M−1)(N−1)
    expected = 32 * 255 / math.sqrt(2) / (31 * 39)
    assert fusion_metrics(step, [step], "vifb")["AG"] == pytest.approx(expected)


def test_psnr_peak_and_error() -> None:
    a = np.tile(np.linspace(0, 180, 32), (32, 1)).round() / 255
    f = a + 10 / 255  # every pixel 10 grey levels off: MSE 100
    peak = 190.0
    assert fusion_metrics(f, [a], "fusevis")["PSNR"] == pytest.approx(10 * math.log10(255**2 / 100))
    assert fusion_metrics(f, [a], "cddfuse")["PSNR"] == pytest.approx(
        10 * math.log10(peak**2 / 100)
    )
    # VIFB: error sqrt(Σ 10²) / (M·N) = 10 / 32, then 20 log10(255 / sqrt(error))
    assert fusion_metrics(f, [a], "vifb")["PSNR"] == pytest.approx(
        20 * math.log10(255 / math.sqrt(10 / 32))
    )


# Agreement with independent computations of the same thing ------------------------------


def test_mi_agrees_with_scikit_learn_and_scipy() -> None:
    f, a, b = textured(8), textured(9), textured(10)
    levels = [np.round(x * 255).astype(int).ravel() for x in (f, a, b)]
    nats = mutual_info_score(levels[0], levels[1]) + mutual_info_score(levels[0], levels[2])
    assert fusion_metrics(f, [a, b], "cddfuse")["MI"] == pytest.approx(nats, rel=1e-10)

    def bits(x: np.ndarray, y: np.ndarray) -> float:
        joint = np.histogram2d(x, y, bins=256, range=[[0, 256], [0, 256]])[0].ravel()
        single = [np.bincount(v, minlength=256) for v in (x, y)]
        return sum(scipy_entropy(h, base=2) for h in single) - scipy_entropy(joint, base=2)

    expected = bits(levels[0], levels[1]) + bits(levels[0], levels[2])
    assert fusion_metrics(f, [a, b], "fusevis")["MI"] == pytest.approx(expected, rel=1e-10)

    def stretched(x: np.ndarray) -> np.ndarray:  # VIFB: min-max, then int16(x · 255)
        return np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5).astype(int).ravel()

    narrow = 0.3 + 0.4 * a  # a narrow range: the stretch changes the levels
    vifb = mutual_info_score(stretched(f), stretched(np.round(narrow * 255) / 255))
    assert fusion_metrics(f, [narrow], "vifb")["MI"] == pytest.approx(vifb, rel=1e-10)


def test_cddfuse_ssim_is_scikit_image_019_defaults_on_the_8bit_scale() -> None:
    f, a, b = textured(11), textured(12), textured(13)
    expected = sum(
        structural_similarity(
            f * 255,
            x * 255,
            win_size=7,
            gaussian_weights=False,
            use_sample_covariance=True,
            data_range=2.0,  # what scikit-image ≤ 0.19 assumed for float images
        )
        for x in (a, b)
    )
    assert fusion_metrics(f, [a, b], "cddfuse")["SSIM"] == pytest.approx(expected, rel=1e-9)


def test_vifb_ssim_agrees_with_its_matlab_formula_on_scipy() -> None:
    """VIFB: filter2 with an 11×11 Gaussian (σ 1.5), 'valid', L = 255, summed over inputs."""
    f, a, b = (textured(s) * 255 for s in (14, 15, 16))
    kernel = np.outer(_gaussian_weights(11, 1.5), _gaussian_weights(11, 1.5))

    def local(x: np.ndarray) -> np.ndarray:
        return convolve2d(x, kernel, mode="valid")

    def matlab_ssim(x: np.ndarray, y: np.ndarray) -> float:
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        mx, my = local(x), local(y)
        vx, vy, cxy = local(x * x) - mx**2, local(y * y) - my**2, local(x * y) - mx * my
        ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        return float(ssim_map.mean())

    expected = matlab_ssim(a, f) + matlab_ssim(b, f)
    assert fusion_metrics(f / 255, [a / 255, b / 255], "vifb")["SSIM"] == pytest.approx(
        expected, rel=1e-9
    )


def _valid_vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel VIF with 'valid' convolutions (MATLAB's vifvec / CDDFuse's VIFF), on SciPy."""
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        kernel = np.outer(_gaussian_weights(n, n / 5), _gaussian_weights(n, n / 5))

        def local(x: np.ndarray, kernel: np.ndarray = kernel) -> np.ndarray:
            return convolve2d(x, kernel, mode="valid")

        if scale > 1:
            ref, dist = local(ref)[::2, ::2], local(dist)[::2, ::2]
        mu1, mu2 = local(ref), local(dist)
        s1 = np.maximum(local(ref * ref) - mu1**2, 0)
        s2 = np.maximum(local(dist * dist) - mu2**2, 0)
        s12 = local(ref * dist) - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10], sv[s1 < 1e-10], s1[s1 < 1e-10] = 0, s2[s1 < 1e-10], 0
        g[s2 < 1e-10], sv[s2 < 1e-10] = 0, 0
        sv[g < 0], g[g < 0] = s2[g < 0], 0
        sv = np.maximum(sv, 1e-10)
        num += np.sum(np.log10(1 + g * g * s1 / (sv + 2)))
        den += np.sum(np.log10(1 + s1 / 2))
    return num / den


def test_valid_vif_agrees_with_scipy_convolutions() -> None:
    f, a, b = textured(17, size=64), textured(18, size=64), textured(19, size=64)
    expected = _valid_vifp(a * 255, f * 255) + _valid_vifp(b * 255, f * 255)
    assert fusion_metrics(f, [a, b], "cddfuse")["VIF"] == pytest.approx(expected, rel=1e-9)
    mirrored = vif_pixel(a, f) + vif_pixel(b, f)
    assert abs(mirrored - expected) > 1e-3  # the borders matter on a 64×64 image


def test_docs_tabulate_the_presets() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert convention_table() in text
    for convention in CONVENTIONS.values():
        assert convention.source in text
