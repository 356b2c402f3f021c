"""Synthetic training pairs made on the fly: the truth follows the recipe, seeded, shapes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy.ndimage import gaussian_filter

from fusevis.errors import InputError
from fusevis.io.tasks import TaskPair, exposure_stack, oracle_clipped, oracle_fusion
from fusevis.training.pairs import (
    DEFAULT_PICTURES,
    HELD_OUT_PICTURES,
    MASK_KINDS,
    Pictures,
    load_pictures,
    make_sample,
    random_focus_mask,
    sample_task_batch,
    step_generator,
)


def smooth_picture(seed: int, size: int = 48) -> np.ndarray:
    noise = gaussian_filter(np.random.default_rng(seed).random((size, size)), 3.0)
    return (noise - noise.min()) / (noise.max() - noise.min())


def write_pictures(folder: Path, sizes: list[int]) -> Path:
    folder.mkdir()
    for index, size in enumerate(sizes):
        grey = (smooth_picture(index, size) * 255).astype(np.uint8)
        PILImage.fromarray(grey).save(folder / f"p{index}.png")
    return folder


def test_multifocus_sample_is_the_defocus_recipe_and_the_oracle_returns_the_truth() -> None:
    picture = smooth_picture(0)
    sample = make_sample(picture, "multi-focus", np.random.default_rng(4))
    mask, (near, far) = sample.truth_mask, sample.inputs
    assert mask is not None and mask.any() and not mask.all()
    assert np.array_equal(np.where(mask, near, far), picture)
    blurred = gaussian_filter(picture, 2.5)
    assert np.array_equal(near[~mask], blurred[~mask])
    assert np.array_equal(far[mask], blurred[mask])


def test_multiexposure_sample_is_the_exposure_recipe_and_inverts_to_the_truth() -> None:
    picture = smooth_picture(1)
    sample = make_sample(picture, "multi-exposure", np.random.default_rng(0), stops=(0.0, 3.0))
    exposures, quality, gains = exposure_stack(picture, (0.0, 3.0))
    for got, want in zip(sample.inputs, exposures, strict=True):
        assert np.array_equal(got, want)
    pair = TaskPair(
        "sample",
        "multi-exposure",
        ("under", "over"),
        sample.inputs,
        truth_image=sample.truth_image,
        quality=sample.quality,
        gains=tuple(gains),
    )
    kept = ~oracle_clipped(pair)
    assert kept.mean() > 0.9
    assert np.allclose(oracle_fusion(pair)[kept], picture[kept], atol=1e-9)
    assert all(np.array_equal(a, b) for a, b in zip(sample.quality, quality, strict=True))


def test_focus_masks_hold_both_classes_and_every_kind_occurs() -> None:
    rng = np.random.default_rng(0)
    fractions = [random_focus_mask(32, rng).mean() for _ in range(60)]
    assert 0 < min(fractions) and max(fractions) < 1
    assert 0.3 < float(np.mean(fractions)) < 0.7  # inverted half the time
    assert len(MASK_KINDS) == 3


def test_batches_are_seeded_by_seed_and_step_and_have_the_inputs_then_the_truth() -> None:
    pictures = Pictures((smooth_picture(0, 40), smooth_picture(1, 50)), ("a", "b"), "test")
    for task in ("multi-focus", "multi-exposure"):
        first = sample_task_batch(pictures, task, 3, 24, step_generator(7, 5))
        again = sample_task_batch(pictures, task, 3, 24, step_generator(7, 5))
        other = sample_task_batch(pictures, task, 3, 24, step_generator(7, 6))
        assert first.shape == (3, 3, 24, 24) and str(first.dtype) == "torch.float32"
        assert first.equal(again) and not first.equal(other)
        assert float(first.min()) >= 0 and float(first.max()) <= 1


def test_default_pictures_leave_out_the_held_out_ones() -> None:
    assert not set(DEFAULT_PICTURES) & set(HELD_OUT_PICTURES)
    pictures = load_pictures(None, crop=64)
    assert len(pictures.arrays) == len(DEFAULT_PICTURES)
    assert all(min(a.shape) == 256 for a in pictures.arrays)  # reduced to the sets' scale
    assert not any(n.rsplit(".", 1)[0] in HELD_OUT_PICTURES for n in pictures.names)


def test_folder_pictures_are_reduced_not_enlarged(tmp_path: Path) -> None:
    folder = write_pictures(tmp_path / "pics", [40, 90])
    pictures = load_pictures(folder, crop=32, scale=64)
    assert sorted(min(a.shape) for a in pictures.arrays) == [40, 64]
    assert all(a.min() == 0 and a.max() == 1 for a in pictures.arrays)


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing", "image folder not found"),
        ("file", "not a folder of images"),
        ("empty", "no readable images"),
        ("garbage", "no readable images (PNG, GIF, JPEG, TIFF, BMP) (1 unreadable: bad.png)"),
        ("small", "p1.png: image of 20x20 px is smaller than the crop 32"),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path: Path, setup: str, fragment: str) -> None:
    folder = tmp_path / "pics"
    if setup == "file":
        folder.write_text("x")
    elif setup == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no pictures here")
    elif setup == "garbage":
        folder.mkdir()
        (folder / "bad.png").write_bytes(b"not a png")
    elif setup == "small":
        write_pictures(folder, [40, 20])
    with pytest.raises(InputError) as caught:
        load_pictures(folder, crop=32)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
