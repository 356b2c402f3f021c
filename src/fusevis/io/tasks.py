"""Image sets for every fusion task, with ground truth where one exists.

Two of the tasks people fuse images for have a ground truth when the inputs are made from
one picture, and FuseVis makes such sets offline from the photographs scikit-image ships:

**multi-focus** (:func:`defocus_pair`) — a sharp picture ``S`` in [0, 1] and a binary focus
mask ``M`` (True where input 1 is in focus: a half, a disc, the objects of the picture, or
the near half of a stereo depth map). With ``B = gaussian_filter(S, sigma)`` (σ = 2.5 px at
256², SciPy's ``reflect`` border)::

    input 1 = M·S + (1 − M)·B        input 2 = M·B + (1 − M)·S

The composite is hard (no blending band), so picking, at every pixel, the in-focus input —
``M·input1 + (1 − M)·input2`` — gives ``S`` exactly, boundary included. The blurred side's
pixels near the boundary still carry blurred light from across it (``B`` is computed on the
whole picture), which is why saliency scores leave out a band there
(:mod:`fusevis.analysis.truth`).

**multi-exposure** (:func:`exposure_stack`) — the picture ``P`` in [0, 1] is read as a
log-encoded scene of ``dynamic_range`` R (2⁸ = 8 stops): radiance
``E = (R^P − 1) / (R − 1)`` in [0, 1]. Exposure k has gain ``g_k = 2^stops_k`` (stops ≥ 0, the
darkest at 0), the sensor clips, and a gamma camera response curve (CRF) maps it to the
image::

    s_k = min(g_k·E, 1)        x_k = s_k^(1/γ)   (γ = 2.2)

Every exposure therefore spans exactly [0, 1] (E = 0 where P = 0; the darkest exposure
saturates just at the brightest pixel), so min-max normalisation leaves it unchanged. The
ground truth is ``P``. Each exposure's quality is Mertens et al.'s well-exposedness
``exp(−(x_k − 0.5)² / (2·0.2²))``, set to 0 where the sensor saturated (s_k = 1): large
where the exposure shows the scene in its mid-tones, the input that should matter there.
Inverting the CRF of the best-exposed input, ``E = x_k^γ / g_k``, and the log encoding
recovers ``P`` wherever that input is not clipped (:func:`oracle_fusion`).

**infrared-visible** and **medical** sets carry no ground truth: the MRI–PET demo sets of
:mod:`fusevis.io.demo`, and public infrared–visible datasets read by
:class:`fusevis.io.PairedDataset` (``ir/`` + ``vi/``, ``Inf/`` + ``Vis/``, ...).

:func:`task_pair` returns a named set as a :class:`TaskPair` of raw arrays (the truth is
exact on them); :func:`task_sets` lists the names by task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Literal

import numpy as np

from fusevis.errors import InputError
from fusevis.io.loading import ImageSet, image_from_array

Task = Literal["multi-focus", "multi-exposure", "infrared-visible", "medical"]
TASKS: tuple[Task, ...] = ("multi-focus", "multi-exposure", "infrared-visible", "medical")

SIZE = 256
DEFOCUS_SIGMA = 2.5
DYNAMIC_RANGE = 2.0**8
CRF_GAMMA = 2.2
EXPOSEDNESS_SIGMA = 0.2


@dataclass(frozen=True)
class TaskPair:
    """Registered inputs of one scene for one fusion task, with their ground truth.

    Attributes
    ----------
    name : str
        The set's name (``multifocus-camera``, ...).
    task : str
        One of :data:`TASKS`.
    modalities : tuple of str
        A name per input, in input order.
    inputs : tuple of numpy.ndarray
        (H, W) float64 arrays in [0, 1], input 1 first, not normalised further (the truth
        is exact on these values).
    truth_image : numpy.ndarray or None
        The image a perfect fusion returns (the sharp picture; the scene for exposures).
    truth_mask : numpy.ndarray or None
        Multi-focus: (H, W) bool, True where input 1 is in focus (input 2 elsewhere).
    quality : tuple of numpy.ndarray or None
        Multi-exposure: per input, its (H, W) well-exposedness in [0, 1] (0 where clipped).
    gains : tuple of float or None
        Multi-exposure: each input's exposure gain.
    description : str
        One line saying how the set was made.
    """

    name: str
    task: Task
    modalities: tuple[str, ...]
    inputs: tuple[np.ndarray, ...]
    truth_image: np.ndarray | None = None
    truth_mask: np.ndarray | None = None
    quality: tuple[np.ndarray, ...] | None = None
    gains: tuple[float, ...] | None = None
    description: str = ""
    recipe: dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """The common (H, W) shape."""
        return self.inputs[0].shape  # type: ignore[return-value]

    @property
    def has_truth(self) -> bool:
        """True when the set carries a focus mask or exposure qualities."""
        return self.truth_mask is not None or self.quality is not None

    def image_set(self) -> ImageSet:
        """The inputs as an :class:`ImageSet` (float32, values kept as they are)."""
        images = [
            image_from_array(x, f"task:{self.name}/{m}", normalize_mode="none")
            for m, x in zip(self.modalities, self.inputs, strict=True)
        ]
        return ImageSet(images, name=self.name)

    def crop(self, top: int, left: int, height: int, width: int | None = None) -> TaskPair:
        """The same set cut to ``[top:top+height, left:left+width]`` (truth cut alike)."""
        width = height if width is None else width
        rows, cols = self.shape
        if not (0 <= top and 0 <= left and 0 < height and 0 < width):
            raise InputError(self.name, f"crop ({top}, {left}, {height}, {width}) is empty")
        if top + height > rows or left + width > cols:
            raise InputError(self.name, f"crop does not fit the {rows}x{cols} images")
        window = (slice(top, top + height), slice(left, left + width))

        def cut(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else _frozen(array[window])

        return replace(
            self,
            inputs=tuple(cut(x) for x in self.inputs),  # type: ignore[misc]
            truth_image=cut(self.truth_image),
            truth_mask=cut(self.truth_mask),
            quality=None if self.quality is None else tuple(cut(q) for q in self.quality),  # type: ignore[misc]
        )

    def truth_arrays(self) -> dict[str, np.ndarray]:
        """The truth as named images in [0, 1]: ``reference``, ``mask``, ``quality<k>``."""
        arrays: dict[str, np.ndarray] = {}
        if self.truth_image is not None:
            arrays["reference"] = self.truth_image
        if self.truth_mask is not None:
            arrays["mask"] = self.truth_mask.astype(np.float64)
        for k, q in enumerate(self.quality or ()):
            arrays[f"quality{k + 1}"] = q
        return arrays

    def arrays(self) -> dict[str, np.ndarray]:
        """Inputs by modality, then :meth:`truth_arrays` (the layout files are written in)."""
        return dict(zip(self.modalities, self.inputs, strict=True)) | self.truth_arrays()


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.setflags(write=False)
    return array


# ---------------------------------------------------------------------------------- recipes


def defocus_pair(
    sharp: np.ndarray, mask: np.ndarray, sigma: float = DEFOCUS_SIGMA
) -> tuple[np.ndarray, np.ndarray]:
    """Two complementary defocused inputs: input 1 sharp where ``mask``, input 2 elsewhere.

    ``B = gaussian_filter(sharp, sigma)``; input 1 = ``where(mask, sharp, B)``, input 2 =
    ``where(mask, B, sharp)``. A hard composite: the oracle ``where(mask, in1, in2)`` is
    ``sharp`` exactly.
    """
    from scipy.ndimage import gaussian_filter

    sharp = np.asarray(sharp, np.float64)
    mask = np.asarray(mask, bool)
    if mask.shape != sharp.shape:
        raise InputError(None, f"focus mask {mask.shape} differs from the image {sharp.shape}")
    blurred = gaussian_filter(sharp, sigma=sigma)
    return np.where(mask, sharp, blurred), np.where(mask, blurred, sharp)


def radiance(picture: np.ndarray, dynamic_range: float = DYNAMIC_RANGE) -> np.ndarray:
    """Scene radiance of a log-encoded picture: ``(R^P − 1) / (R − 1)``, in [0, 1]."""
    picture = np.asarray(picture, np.float64)
    scene = np.expm1(picture * np.log(dynamic_range)) / (dynamic_range - 1.0)
    return np.where(picture >= 1.0, 1.0, np.clip(scene, 0.0, 1.0))  # 1 exactly at P = 1


def encode(radiance_values: np.ndarray, dynamic_range: float = DYNAMIC_RANGE) -> np.ndarray:
    """The inverse of :func:`radiance`: ``log(1 + (R − 1)·E) / log(R)``."""
    return np.log1p((dynamic_range - 1.0) * np.asarray(radiance_values, np.float64)) / np.log(
        dynamic_range
    )


def camera_response(exposure: np.ndarray, gamma: float = CRF_GAMMA) -> np.ndarray:
    """The camera response curve: sensor value s in [0, 1] → pixel ``s^(1/γ)``."""
    return np.power(np.clip(exposure, 0.0, 1.0), 1.0 / gamma)


def inverse_camera_response(pixel: np.ndarray, gamma: float = CRF_GAMMA) -> np.ndarray:
    """The inverse of :func:`camera_response`: pixel x → sensor value ``x^γ``."""
    return np.power(np.clip(pixel, 0.0, 1.0), gamma)


def well_exposedness(
    pixel: np.ndarray, clipped: np.ndarray | None = None, sigma: float = EXPOSEDNESS_SIGMA
) -> np.ndarray:
    """Mertens et al.'s ``exp(−(x − 0.5)² / (2σ²))``, 0 where ``clipped``."""
    quality = np.exp(-((np.asarray(pixel, np.float64) - 0.5) ** 2) / (2.0 * sigma**2))
    return quality if clipped is None else np.where(clipped, 0.0, quality)


def exposure_stack(
    picture: np.ndarray,
    stops: Sequence[float] = (0.0, 3.0),
    dynamic_range: float = DYNAMIC_RANGE,
    gamma: float = CRF_GAMMA,
) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """Exposures of a picture read as a scene of ``dynamic_range``, with their quality.

    Returns ``(exposures, quality, gains)``: per stop, ``camera_response(min(g·E, 1))`` with
    ``g = 2^stop``, its :func:`well_exposedness` (0 where the sensor saturated) and ``g``.
    Stops must be ≥ 0; with one at 0 and ``picture`` spanning [0, 1], every exposure spans
    exactly [0, 1].
    """
    if min(stops) < 0:
        raise InputError(None, f"exposure stops must be >= 0 (0 = darkest), got {list(stops)}")
    scene = radiance(picture, dynamic_range)
    exposures, quality, gains = [], [], []
    for stop in stops:
        gain = float(2.0**stop)
        sensor = gain * scene
        clipped = sensor >= 1.0
        pixel = camera_response(np.minimum(sensor, 1.0), gamma)
        exposures.append(pixel)
        quality.append(well_exposedness(pixel, clipped))
        gains.append(gain)
    return exposures, quality, gains


def oracle_fusion(pair: TaskPair) -> np.ndarray:
    """What a fusion that knows the truth returns; equals ``pair.truth_image`` (see below).

    Multi-focus: ``where(mask, input1, input2)`` — the sharp picture exactly. Multi-exposure:
    at each pixel the input of highest quality (the first on ties), its CRF inverted and
    divided by its gain, then log-encoded — the picture wherever that input is not clipped
    (:func:`oracle_clipped` marks where it is).
    """
    if pair.truth_mask is not None:
        return np.where(pair.truth_mask, pair.inputs[0], pair.inputs[1])
    if pair.quality is None or pair.gains is None:
        raise InputError(pair.name, f"a {pair.task} set has no ground truth to fuse with")
    gamma = pair.recipe.get("gamma", CRF_GAMMA)
    best = np.argmax(np.stack(pair.quality), axis=0)
    chosen = np.choose(best, pair.inputs)
    gain = np.asarray(pair.gains)[best]
    scene = inverse_camera_response(chosen, gamma) / gain
    return encode(scene, pair.recipe.get("dynamic_range", DYNAMIC_RANGE))


def oracle_clipped(pair: TaskPair) -> np.ndarray:
    """Multi-exposure: True where the input :func:`oracle_fusion` picks is saturated."""
    if pair.quality is None:
        return np.zeros(pair.shape, bool)
    best = np.argmax(np.stack(pair.quality), axis=0)
    return np.choose(best, pair.inputs) >= 1.0


# ---------------------------------------------------------------------------- the sets


def _picture(photo: str) -> np.ndarray:
    """A scikit-image photograph as grey in [0, 1] (min-max), 256×256."""
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    if photo == "motorcycle":
        picture = data.stereo_motorcycle()[0]
    else:
        picture = getattr(data, photo)()
    grey = rgb2gray(picture) if picture.ndim == 3 else picture / 255.0
    grey = _square(grey)
    grey = resize(grey, (SIZE, SIZE), order=1, anti_aliasing=True)
    low, high = float(grey.min()), float(grey.max())
    return (grey - low) / (high - low)


def _square(array: np.ndarray) -> np.ndarray:
    """The central square of ``array``."""
    rows, cols = array.shape[:2]
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    return array[top : top + side, left : left + side]


def _mask(region: str, picture: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    rr, cc = np.mgrid[:SIZE, :SIZE]
    if region == "left":
        return cc < SIZE // 2
    if region == "disc":
        return (rr - SIZE * 0.4) ** 2 + (cc - SIZE * 0.5) ** 2 <= (SIZE * 0.3) ** 2
    if region == "diagonal":
        return cc > rr
    if region == "objects":  # Otsu on the smoothed picture, holes filled, specks removed
        from skimage.filters import threshold_otsu

        smooth = ndimage.gaussian_filter(picture, 2.0)
        objects = ndimage.binary_fill_holes(smooth > threshold_otsu(smooth))
        return ndimage.binary_opening(objects, iterations=3)
    if region == "depth":  # the nearer half of the scene by stereo disparity
        from skimage import data
        from skimage.transform import resize

        disparity = _square(data.stereo_motorcycle()[2].astype(np.float64))
        valid = np.isfinite(disparity)
        nearest = ndimage.distance_transform_edt(
            ~valid, return_distances=False, return_indices=True
        )
        filled = disparity[tuple(nearest)]
        small = ndimage.gaussian_filter(resize(filled, (SIZE, SIZE), order=1), 3.0)
        return small > np.median(small)
    raise InputError(None, f"unknown focus region {region!r}")


def _multifocus(name: str, photo: str, region: str, description: str) -> TaskPair:
    sharp = _picture(photo)
    mask = _mask(region, sharp)
    near, far = defocus_pair(sharp, mask)
    return TaskPair(
        name,
        "multi-focus",
        ("near", "far"),
        (_frozen(near), _frozen(far)),
        truth_image=_frozen(sharp),
        truth_mask=_frozen(mask),
        description=description,
        recipe={"sigma": DEFOCUS_SIGMA},
    )


def _multiexposure(
    name: str, photo: str, stops: tuple[float, ...], modalities: tuple[str, ...], description: str
) -> TaskPair:
    picture = _picture(photo)
    exposures, quality, gains = exposure_stack(picture, stops)
    return TaskPair(
        name,
        "multi-exposure",
        modalities,
        tuple(_frozen(x) for x in exposures),
        truth_image=_frozen(picture),
        quality=tuple(_frozen(q) for q in quality),
        gains=tuple(gains),
        description=description,
        recipe={"dynamic_range": DYNAMIC_RANGE, "gamma": CRF_GAMMA},
    )


@dataclass(frozen=True)
class TaskSet:
    """A named synthetic set: its task, inputs and how to build it."""

    name: str
    task: Task
    description: str
    modalities: tuple[str, ...]
    build: Callable[[], TaskPair]


def _focus_set(name: str, photo: str, region: str, description: str) -> TaskSet:
    return TaskSet(
        name,
        "multi-focus",
        description,
        ("near", "far"),
        lambda: _multifocus(name, photo, region, description),
    )


def _exposure_set(
    name: str, photo: str, stops: tuple[float, ...], modalities: tuple[str, ...], text: str
) -> TaskSet:
    return TaskSet(
        name,
        "multi-exposure",
        text,
        modalities,
        lambda: _multiexposure(name, photo, stops, modalities, text),
    )


TASK_SETS: dict[str, TaskSet] = {
    s.name: s
    for s in (
        _focus_set(
            "multifocus-camera",
            "camera",
            "left",
            "scikit-image 'camera': left half sharp in input 1, right half in input 2",
        ),
        _focus_set(
            "multifocus-astronaut",
            "astronaut",
            "disc",
            "scikit-image 'astronaut' (grey): a central disc sharp in input 1, the rest in 2",
        ),
        _focus_set(
            "multifocus-coins",
            "coins",
            "objects",
            "scikit-image 'coins': the coins (Otsu) sharp in input 1, the background in 2",
        ),
        _focus_set(
            "multifocus-motorcycle",
            "motorcycle",
            "depth",
            "scikit-image stereo 'motorcycle' (left view): nearer half by disparity sharp "
            "in input 1, farther half in 2",
        ),
        _focus_set(
            "multifocus-chelsea",
            "chelsea",
            "diagonal",
            "scikit-image 'chelsea' (grey): upper-right triangle sharp in input 1, the rest in 2",
        ),
        _exposure_set(
            "multiexposure-astronaut",
            "astronaut",
            (0.0, 3.0),
            ("under", "over"),
            "scikit-image 'astronaut' (grey) as an 8-stop scene: exposures at 0 and +3 stops, "
            "gamma 2.2 CRF, clipped",
        ),
        _exposure_set(
            "multiexposure-coffee",
            "coffee",
            (0.0, 2.0, 4.0),
            ("dark", "mid", "bright"),
            "scikit-image 'coffee' (grey) as an 8-stop scene: exposures at 0, +2 and +4 "
            "stops, gamma 2.2 CRF, clipped",
        ),
    )
}


@cache
def _built(name: str) -> TaskPair:
    return TASK_SETS[name].build()


def task_pair(name: str) -> TaskPair:
    """A named set as a :class:`TaskPair` (synthetic sets with truth; demo sets without).

    Raises
    ------
    InputError
        For an unknown name (the message lists the known ones).
    """
    if name in TASK_SETS:
        return _built(name)
    from fusevis.io.demo import DEMO_SETS

    if name in DEMO_SETS:
        demo = DEMO_SETS[name]
        arrays = demo.build()
        return TaskPair(
            name,
            demo.task,  # type: ignore[arg-type]
            demo.modalities,
            tuple(_frozen(np.asarray(arrays[m], np.float64)) for m in demo.modalities),
            description=demo.description,
        )
    known = ", ".join(dict.fromkeys([*TASK_SETS, *DEMO_SETS]))
    raise InputError(None, f"unknown image set {name!r}; choose from {known}")


def task_sets(task: str | None = None) -> list[str]:
    """Names of the sets of ``task`` (every set when None), synthetic and demo alike."""
    from fusevis.io.demo import DEMO_SETS

    if task is not None and task not in TASKS:
        raise InputError(None, f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    tasks = {name: s.task for name, s in TASK_SETS.items()}
    tasks |= {name: d.task for name, d in DEMO_SETS.items() if name not in tasks}
    return [name for name, t in tasks.items() if task is None or t == task]
