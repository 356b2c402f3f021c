from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from fusevis.io import load_images, recolor, rgb_to_ycbcr, ycbcr_to_rgb


def test_ycbcr_round_trip_through_files(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "colour.png")
    PILImage.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    image_set = load_images(
        [tmp_path / "grey.png", tmp_path / "colour.png"], color="ycbcr", normalize="none"
    )
    colour = image_set.color_image
    assert colour is not None and colour.chroma is not None
    assert image_set[0].chroma is None  # grey inputs carry no colour
    restored = recolor(colour.data, colour.chroma)
    assert np.abs(restored * 255 - rgb).max() <= 1.0


def test_ycbcr_matrix_is_inverse_and_grey_is_neutral() -> None:
    rgb = np.random.default_rng(4).random((8, 8, 3))
    y, cb, cr = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycbcr_to_rgb(y, cb, cr), rgb, atol=1e-12)
    grey = np.repeat(np.linspace(0, 1, 5)[:, None, None], 3, axis=2)
    _, cb, cr = rgb_to_ycbcr(grey)
    np.testing.assert_allclose(cb, 0.5, atol=1e-9)
    np.testing.assert_allclose(cr, 0.5, atol=1e-9)


def test_minmax_y_of_colour_input(tmp_path: Path) -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "c.png")
    image = load_images([tmp_path / "c.png"], color="ycbcr")[0]
    assert image.data.min() == 0.0 and image.data.max() == 1.0
