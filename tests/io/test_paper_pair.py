from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from fusevis.io import PairedDataset, load_images


def reference(path: Path) -> np.ndarray:
    rgb = np.asarray(PILImage.open(path).convert("RGB"), dtype=np.float64)
    grey = rgb @ np.array([0.2989, 0.5870, 0.1140])
    return (grey - grey.min()) / (grey.max() - grey.min())


def test_test_pair_grey_mode_is_luminance_plus_minmax(paper: Path) -> None:
    files = [paper / "test-pair" / "mri.gif", paper / "test-pair" / "pet.png"]
    image_set = load_images(files, color="gray")
    for image, path in zip(image_set, files, strict=True):
        assert image.data.dtype == np.float32 and image.data.shape == (256, 256)
        assert image.data.min() == 0.0 and image.data.max() == 1.0
        np.testing.assert_allclose(image.data, reference(path), atol=1e-6)


def test_paper_training_set_pairs_by_name(paper: Path) -> None:
    dataset = PairedDataset(paper / "train", modalities=("mri", "pet"))
    assert len(dataset) == 272
    first = dataset.paths(0)
    assert first[0].stem == first[1].stem
    image_set = dataset[0]
    assert image_set.shape == (256, 256) and image_set.name == first[0].stem
    # PET training images are colour palette GIFs: grey mode uses the luminance
    np.testing.assert_allclose(image_set[1].data, reference(first[1]), atol=1e-6)
