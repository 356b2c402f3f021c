"""Training pairs for the synthetic tasks, made on the fly from any folder of pictures.

The recipes are those of :mod:`fusevis.io.tasks` (whose functions do the work), applied to
random crops of pictures instead of whole fixed ones:

**multi-focus** — a random binary focus mask ``M`` over the crop (:func:`random_focus_mask`:
a half-plane at a random angle, an ellipse, or a smooth random blob, with both classes
present) and :func:`~fusevis.io.tasks.defocus_pair` with σ = 2.5 px: input 1 sharp where
``M``, input 2 elsewhere. The truth is the sharp crop.

**multi-exposure** — the crop read as a log-encoded scene and exposed at each stop
(:func:`~fusevis.io.tasks.exposure_stack`: gain, sensor clipping, gamma CRF). The truth is
the crop itself.

Pictures are read grey (luminance) and min-max scaled, and reduced (never enlarged) so that
their shorter side is ``scale`` pixels (256: the scale of the held-out sets, at which the
recipes' σ = 2.5 px blur was chosen). Crops are drawn from a NumPy generator seeded by
``(seed, step)``, so step ``s`` of a run always gets the same batch, whether the run was
resumed or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fusevis.errors import InputError
from fusevis.io.tasks import DEFOCUS_SIGMA, defocus_pair, exposure_stack

SyntheticTask = Literal["multi-focus", "multi-exposure"]
SYNTHETIC_TASKS: tuple[SyntheticTask, ...] = ("multi-focus", "multi-exposure")

#: scikit-image pictures that the held-out sets of :mod:`fusevis.io.tasks` are made from
#: (file stems in ``skimage.data``), never used for training by default.
HELD_OUT_PICTURES = (
    "astronaut",
    "camera",
    "coins",
    "chelsea",
    "coffee",
    "motorcycle_left",
    "motorcycle_right",
)
#: Default training pictures: the other photographs and scans scikit-image ships that are
#: at least 256 px on their shorter side (the small test images, the chessboards and the
#: multi-page TIFF are left out).
DEFAULT_PICTURES = (
    "brick",
    "cell",
    "clock_motion",
    "color",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "ihc",
    "logo",
    "moon",
    "phantom",
    "retina",
    "rocket",
)
DEFAULT_SCALE = 256
DEFAULT_STOPS = (0.0, 3.0)
MASK_KINDS = ("half-plane", "ellipse", "blob")
_RASTER = (".png", ".gif", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Pictures:
    """Grey pictures in [0, 1] to cut training crops from.

    Attributes
    ----------
    arrays : tuple of numpy.ndarray
        (H, W) float64 pictures, each min-max scaled.
    names : tuple of str
        A file name per picture.
    source : str
        The folder they were read from (or ``scikit-image``).
    """

    arrays: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    source: str

    def describe(self) -> str:
        """One line: how many pictures, from where, their names."""
        return f"{len(self.arrays)} pictures from {self.source}: {', '.join(self.names)}"


def _reduced(picture: np.ndarray, scale: int) -> np.ndarray:
    from skimage.transform import resize

    rows, cols = picture.shape
    side = min(rows, cols)
    if scale and side > scale:
        shape = (max(1, round(rows * scale / side)), max(1, round(cols * scale / side)))
        picture = resize(picture, shape, order=1, anti_aliasing=True)
    low, high = float(picture.min()), float(picture.max())
    return (picture - low) / (high - low) if high > low else np.zeros_like(picture)


def default_folder() -> Path:
    """scikit-image's bundled data folder."""
    from skimage import data

    return Path(data.__file__).parent


def load_pictures(
    folder: str | Path | None = None,
    crop: int = 64,
    scale: int = DEFAULT_SCALE,
    max_pixels: int | None = None,
) -> Pictures:
    """Read every picture of ``folder`` (default: :data:`DEFAULT_PICTURES` of scikit-image).

    Parameters
    ----------
    folder : path or None
        A folder of PNG, GIF, JPEG, TIFF or BMP files (not searched recursively).
    crop : int
        The crop size the pictures must hold after reduction.
    scale : int
        Pictures whose shorter side is longer are reduced to it (0: keep their size).
    max_pixels : int or None
        The most pixels a file may announce (see :func:`fusevis.io.load_image`).

    Raises
    ------
    InputError
        One line naming the folder or file: the folder is missing or not a folder, it holds
        no readable picture, or a picture is smaller than ``crop``.
    """
    from fusevis.io import load_image

    if folder is None:
        base = default_folder()
        files = [next(base.glob(f"{stem}.*")) for stem in DEFAULT_PICTURES]
        source = "scikit-image"
    else:
        base = Path(folder)
        if not base.exists():
            raise InputError(base, "image folder not found")
        if not base.is_dir():
            raise InputError(base, "not a folder of images")
        files = sorted(p for p in base.iterdir() if p.is_file() and p.suffix.lower() in _RASTER)
        source = str(base)
    arrays, names, unreadable = [], [], []
    for path in files:
        try:
            image = load_image(path, color="gray", normalize="minmax", max_pixels=max_pixels)
        except InputError:
            unreadable.append(path.name)
            continue
        picture = _reduced(np.asarray(image.data, np.float64), scale)
        if min(picture.shape) < crop:
            raise InputError(
                path,
                f"image of {picture.shape[0]}x{picture.shape[1]} px is smaller than "
                f"the crop {crop}",
            )
        arrays.append(picture)
        names.append(path.name)
    if not arrays:
        tried = (
            f" ({len(unreadable)} unreadable: {', '.join(unreadable[:5])})" if unreadable else ""
        )
        raise InputError(base, f"no readable images (PNG, GIF, JPEG, TIFF, BMP){tried}")
    return Pictures(tuple(arrays), tuple(names), source)


def random_focus_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random (size, size) bool focus mask holding both classes.

    One of :data:`MASK_KINDS`, chosen uniformly: a half-plane through a random point at a
    random angle; an ellipse of random centre, axes and angle (True inside); a blob (white
    noise smoothed with σ = size/8, above its median). Each is inverted with probability
    1/2, so input 1 is in focus on either side equally often.
    """
    from scipy.ndimage import gaussian_filter

    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    kind = MASK_KINDS[int(rng.integers(len(MASK_KINDS)))]
    if kind == "half-plane":
        angle = rng.uniform(0.0, np.pi)
        centre = rng.uniform(0.3, 0.7, 2) * size
        mask = (cols - centre[1]) * np.cos(angle) + (rows - centre[0]) * np.sin(angle) > 0
    elif kind == "ellipse":
        centre = rng.uniform(0.25, 0.75, 2) * size
        axes = rng.uniform(0.15, 0.45, 2) * size
        angle = rng.uniform(0.0, np.pi)
        u = (cols - centre[1]) * np.cos(angle) + (rows - centre[0]) * np.sin(angle)
        v = -(cols - centre[1]) * np.sin(angle) + (rows - centre[0]) * np.cos(angle)
        mask = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0
    else:
        noise = gaussian_filter(rng.standard_normal((size, size)), size / 8.0, mode="wrap")
        mask = noise > np.median(noise)
    if rng.random() < 0.5:
        mask = ~mask
    if mask.all() or not mask.any():  # a degenerate draw: fall back to the left half
        mask = cols < size // 2
    return mask


@dataclass(frozen=True)
class TaskSample:
    """One synthetic training sample and its truth.

    Attributes
    ----------
    inputs : tuple of numpy.ndarray
        (c, c) inputs in [0, 1], input 1 first.
    truth_image : numpy.ndarray
        The sharp crop (multi-focus) or the scene crop (multi-exposure).
    truth_mask : numpy.ndarray or None
        Multi-focus: True where input 1 is in focus.
    quality : tuple of numpy.ndarray or None
        Multi-exposure: each input's well-exposedness (0 where clipped).
    """

    inputs: tuple[np.ndarray, ...]
    truth_image: np.ndarray
    truth_mask: np.ndarray | None = None
    quality: tuple[np.ndarray, ...] | None = None


def make_sample(
    picture: np.ndarray,
    task: SyntheticTask,
    rng: np.random.Generator,
    stops: Sequence[float] = DEFAULT_STOPS,
    sigma: float = DEFOCUS_SIGMA,
) -> TaskSample:
    """Apply ``task``'s recipe to ``picture`` (a crop in [0, 1]); see the module text."""
    picture = np.asarray(picture, np.float64)
    if task == "multi-focus":
        mask = random_focus_mask(picture.shape[0], rng)
        near, far = defocus_pair(picture, mask, sigma)
        return TaskSample((near, far), picture, truth_mask=mask)
    if task == "multi-exposure":
        exposures, quality, _ = exposure_stack(picture, stops)
        return TaskSample(tuple(exposures), picture, quality=tuple(quality))
    raise InputError(
        None, f"unknown training task {task!r}; choose from {', '.join(SYNTHETIC_TASKS)}"
    )


def step_generator(seed: int, step: int) -> np.random.Generator:
    """The generator of training step ``step`` (0-based) of a run seeded ``seed``."""
    return np.random.default_rng([seed, step])


def sample_task_batch(
    pictures: Pictures,
    task: SyntheticTask,
    batch_size: int,
    crop: int,
    rng: np.random.Generator,
    flips: bool = True,
    stops: Sequence[float] = DEFAULT_STOPS,
) -> torch.Tensor:
    """A (B, N + 1, crop, crop) float32 batch: the N inputs, then the truth image.

    Each sample: a picture drawn uniformly, a random crop of it, random horizontal and
    vertical flips (with ``flips``), then :func:`make_sample`. Multi-exposure crops keep the
    picture's levels (the crop is not rescaled), so a dark crop stays dark in every exposure.
    """
    samples = []
    for _ in range(batch_size):
        picture = pictures.arrays[int(rng.integers(len(pictures.arrays)))]
        rows, cols = picture.shape
        top, left = int(rng.integers(rows - crop + 1)), int(rng.integers(cols - crop + 1))
        patch = picture[top : top + crop, left : left + crop]
        if flips:
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1, :]
        sample = make_sample(patch, task, rng, stops)
        samples.append(np.stack([*sample.inputs, sample.truth_image]))
    return torch.from_numpy(np.stack(samples).astype(np.float32))
