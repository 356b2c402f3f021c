"""Built-in demo image sets, made from files that installed dependencies ship.

No network access is needed: the brain sets are built from nilearn's bundled MNI152
template (T1, grey- and white-matter probability maps, 1 mm) and its bundled motor-task
fMRI statistical map; the multi-focus and multi-exposure sets from scikit-image's sample
photographs by the recipes of :mod:`fusevis.io.tasks` (which also gives their ground truth:
the sharp picture with the focus mask, or the scene with each exposure's quality). Every set
is 256×256; :func:`load_demo` returns it min-max normalised like any loaded image.

The demo volume pair (:func:`demo_volume_arrays`, :func:`export_demo_volumes`) is the same
MRI + simulated FDG-PET model over the whole brain, on a 2 mm grid (98×116×94 voxels, RAS+)
so that whole-volume runs stay quick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from os import PathLike
from pathlib import Path

import numpy as np

from fusevis.errors import InputError
from fusevis.io.image import Image
from fusevis.io.loading import ImageSet, image_from_array
from fusevis.io.tasks import TASK_SETS, task_pair
from fusevis.io.writers import save_image

SIZE = 256
PET_SLICE = 90  # axial index in the 1 mm MNI grid: z = +18 mm, basal ganglia and cortex
FMRI_SLICE = 130  # z = +58 mm, through the motor cortex where the task map peaks


@dataclass(frozen=True)
class DemoSet:
    """A named demo image set: its inputs (by modality), its task and any ground truth.

    ``build`` returns the inputs by modality plus, for the synthetic sets, ``reference`` (the
    truth image), ``mask`` (multi-focus: 1 where input 1 is in focus) or ``quality<k>``
    (multi-exposure). ``raw`` sets are written by :func:`export_demo` as they are (their
    values lie in [0, 1] and the truth holds on them), the others min-max scaled.
    """

    name: str
    description: str
    modalities: tuple[str, ...]
    build: Callable[[], dict[str, np.ndarray]]
    task: str = "medical"
    raw: bool = False


def _task_arrays(name: str) -> Callable[[], dict[str, np.ndarray]]:
    return lambda: task_pair(name).arrays()


def _nilearn_file(name: str) -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data" / name


@cache
def _mni_volumes() -> dict[str, np.ndarray]:
    import nibabel as nib

    names = {
        "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
        "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    }
    volumes = {
        key: np.asarray(nib.load(str(_nilearn_file(n))).get_fdata(), np.float64)
        for key, n in names.items()
    }
    for key in ("gm", "wm"):  # stored as 0..255: rescale to probabilities
        volumes[key] /= volumes[key].max()
    return volumes


def _to_display(plane: np.ndarray) -> np.ndarray:
    """Turn an MNI (x, y) plane anterior-up, pad it square and resample it to 256×256."""
    from skimage.transform import resize

    plane = np.rot90(plane)
    rows, cols = plane.shape
    side = max(rows, cols)
    square = np.zeros((side, side))
    top, left = (side - rows) // 2, (side - cols) // 2
    square[top : top + rows, left : left + cols] = plane
    return resize(square, (SIZE, SIZE), order=1, anti_aliasing=True)


def simulate_fdg_pet(
    gray_matter: np.ndarray,
    white_matter: np.ndarray,
    fwhm_mm: float = 7.0,
    voxel_mm: float = 1.0,
    noise: float = 0.03,
    lesion: tuple[int, ...] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Simulate an FDG-PET slice or volume from tissue probability maps.

    The model is deliberately simple and stated in full:

    1. uptake = 4·GM + 1·WM (grey matter takes up about four times as much FDG as white
       matter; CSF and background take up none);
    2. optionally a hypometabolic region: inside the disc ``lesion = (row, col, radius)``
       (a 2-D slice) or the ball ``lesion = (x, y, z, radius)`` (a volume), in voxels,
       uptake is halved, as in a focal FDG deficit;
    3. blur with an isotropic Gaussian of ``fwhm_mm`` (σ = FWHM / 2.3548), the scanner's
       point-spread function (6–8 mm for clinical PET);
    4. add Gaussian noise whose standard deviation is ``noise`` × the image maximum ×
       sqrt(signal / maximum) (Poisson-like: stronger where counts are high), then clip at 0.

    Parameters
    ----------
    gray_matter, white_matter : numpy.ndarray
        2-D or 3-D probability maps in [0, 1] on the same grid (every step works in n-D:
        the same model gives a slice or a whole volume).
    fwhm_mm, voxel_mm : float
        PSF width and the grid's voxel size in millimetres.
    noise : float
        Relative noise level (0 for none).
    lesion : tuple of int or None
        Centre (one index per axis) and radius of the reduced-uptake disc or ball.
    seed : int
        Seed of the noise generator.

    Returns
    -------
    numpy.ndarray
        The simulated activity, same shape as the inputs.
    """
    from scipy.ndimage import gaussian_filter

    uptake = 4.0 * gray_matter + 1.0 * white_matter
    if lesion is not None:
        if len(lesion) != uptake.ndim + 1:
            raise ValueError(f"lesion needs {uptake.ndim} centre indices and a radius")
        *centre, radius = lesion
        grids = np.ogrid[tuple(slice(0, n) for n in uptake.shape)]
        distance = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
        uptake = np.where(distance <= radius**2, 0.5 * uptake, uptake)
    blurred = gaussian_filter(uptake, sigma=fwhm_mm / 2.3548 / voxel_mm)
    peak = float(blurred.max())
    rng = np.random.default_rng(seed)
    noisy = blurred + rng.normal(size=blurred.shape) * noise * peak * np.sqrt(
        np.clip(blurred / peak, 0.0, None)
    )
    return np.clip(noisy, 0.0, None)


def _mri_pet(lesion: bool) -> dict[str, np.ndarray]:
    volumes = _mni_volumes()
    k = PET_SLICE
    # (x, y) voxel of a left parietal cortical region in the 1 mm grid, 14 mm wide
    spot = (60, 90, 14) if lesion else None
    pet = simulate_fdg_pet(volumes["gm"][:, :, k], volumes["wm"][:, :, k], lesion=spot)
    return {"mri": _to_display(volumes["t1"][:, :, k]), "pet": _to_display(pet)}


def _mri_fmri() -> dict[str, np.ndarray]:
    import nibabel as nib
    from nilearn.image import resample_to_img

    template = nib.load(str(_nilearn_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")))
    stat_map = nib.load(str(_nilearn_file("image_10426.nii.gz")))
    resampled = resample_to_img(
        stat_map, template, interpolation="continuous", force_resample=True, copy_header=True
    )
    activation = np.clip(np.nan_to_num(resampled.get_fdata()[:, :, FMRI_SLICE]), 0.0, None)
    brain = _mni_volumes()["t1"][:, :, FMRI_SLICE]
    return {"mri": _to_display(brain), "fmri": _to_display(activation * (brain > 0))}


VOLUME_VOXEL_MM = 2
"""Voxel size of the demo volumes: the 1 mm MNI grid averaged over 2×2×2 blocks."""


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor``³ blocks of a volume (trailing voxels that do not fill one dropped)."""
    shape = tuple(n // factor for n in volume.shape)
    cropped = volume[tuple(slice(0, n * factor) for n in shape)]
    blocks = cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    return blocks.mean(axis=(1, 3, 5))


def _mni_affine() -> np.ndarray:
    import nibabel as nib

    name = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    return np.asarray(nib.load(str(_nilearn_file(name))).affine, np.float64)


def _unit_float32(volume: np.ndarray) -> np.ndarray:
    low, high = float(volume.min()), float(volume.max())
    return ((volume - low) / (high - low)).astype(np.float32)


@cache
def _demo_volumes() -> tuple[dict[str, np.ndarray], np.ndarray]:
    factor = VOLUME_VOXEL_MM
    volumes = {key: _block_mean(v, factor) for key, v in _mni_volumes().items()}
    pet = simulate_fdg_pet(volumes["gm"], volumes["wm"], voxel_mm=float(factor))
    affine = _mni_affine()
    # block (i, j, k) covers 1 mm voxels factor*i ... factor*i + factor - 1: its centre
    coarse = affine.copy()
    coarse[:3, :3] = affine[:3, :3] * factor
    coarse[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2) + affine[:3, 3]
    arrays = {"mri": _unit_float32(volumes["t1"]), "pet": _unit_float32(pet)}
    for array in arrays.values():
        array.setflags(write=False)
    coarse.setflags(write=False)
    return arrays, coarse


def demo_volume_arrays() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The demo MRI + simulated FDG-PET volume pair and its affine.

    The MNI152 T1 template and the simulated FDG-PET of :func:`simulate_fdg_pet` (4:1
    grey/white uptake, 7 mm FWHM, noise; no lesion) applied in 3-D, on a 2 mm grid (the
    1 mm template averaged over 2×2×2 blocks): 98×116×94 voxels, axial slices 98×116.
    Computed once per process (cached); the arrays returned are copies.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{"mri": T1, "pet": simulated FDG-PET}`` as float32 (X, Y, Z) arrays in RAS+
        order, each min-max scaled to [0, 1].
    numpy.ndarray
        Their 4×4 voxel-to-world affine in millimetres (MNI space; 2 mm voxels).
    """
    arrays, affine = _demo_volumes()
    return {key: array.copy() for key, array in arrays.items()}, affine.copy()


def export_demo_volumes(folder: str | PathLike[str]) -> list[Path]:
    """Write the demo volume pair as ``folder/mri.nii.gz`` and ``folder/pet.nii.gz``.

    NIfTI-1, float32, with the affine of :func:`demo_volume_arrays` as both sform and
    qform (code ``mni``) and units of mm (``xyzt_units``); each file is written atomically.
    Returns the two paths, MRI first.
    """
    import nibabel as nib

    from fusevis.io.writers import atomic_output

    arrays, affine = demo_volume_arrays()
    written = []
    for key in ("mri", "pet"):
        image = nib.Nifti1Image(arrays[key], affine)
        image.header.set_xyzt_units("mm", "sec")
        image.set_qform(affine, code="mni")
        image.set_sform(affine, code="mni")
        target = Path(folder) / f"{key}.nii.gz"
        with atomic_output(target) as temporary:
            nib.save(image, str(temporary))
        written.append(target)
    return written


DEMO_SETS: dict[str, DemoSet] = {
    s.name: s
    for s in (
        DemoSet(
            "mri-pet",
            "MNI152 T1 MRI + simulated FDG-PET (4:1 grey/white uptake, 7 mm FWHM, noise)",
            ("mri", "pet"),
            lambda: _mri_pet(lesion=False),
        ),
        DemoSet(
            "mri-pet-lesion",
            "as mri-pet, with a 14 mm region of halved uptake in the left parietal cortex",
            ("mri", "pet"),
            lambda: _mri_pet(lesion=True),
        ),
        DemoSet(
            "mri-fmri",
            "MNI152 T1 MRI + motor-task fMRI activation (positive z, resampled to 1 mm)",
            ("mri", "fmri"),
            _mri_fmri,
        ),
    )
} | {
    s.name: DemoSet(s.name, s.description, s.modalities, _task_arrays(s.name), s.task, raw=True)
    for s in TASK_SETS.values()
    if len(s.modalities) == 2  # the demo and the shipped networks fuse two inputs
}


def _demo_set(name: str) -> DemoSet:
    if name not in DEMO_SETS:
        raise InputError(None, f"unknown demo set {name!r}; choose from {', '.join(DEMO_SETS)}")
    return DEMO_SETS[name]


def demo_arrays(name: str) -> dict[str, np.ndarray]:
    """Return the raw (un-normalised) 256×256 arrays of a demo set, keyed by modality.

    Synthetic sets add their truth: ``reference``, and ``mask`` or ``quality<k>``.
    """
    return _demo_set(name).build()


def load_demo(name: str = "mri-pet") -> ImageSet:
    """Return a demo set's inputs as a normalised :class:`ImageSet` (truth left out).

    Each input is min-max scaled like any loaded image; the exposures of a multi-exposure
    set already span [0, 1], a multi-focus input may change slightly. For the values on
    which the ground truth is exact use :func:`fusevis.io.tasks.task_pair`.
    """
    demo = _demo_set(name)
    arrays = demo.build()
    images: list[Image] = [image_from_array(arrays[m], f"demo:{name}/{m}") for m in demo.modalities]
    return ImageSet(images, name=name)


def _for_file(demo: DemoSet, key: str, array: np.ndarray) -> np.ndarray:
    """The array as written: as it is for a ``raw`` set, else min-max scaled."""
    if demo.raw:
        return np.asarray(array, np.float64)
    return image_from_array(array, f"demo:{demo.name}/{key}").data


def export_demo(name: str, folder: str | PathLike[str]) -> list[Path]:
    """Write a demo set as 8-bit PNG files: ``<modality>.png`` and its truth, if any.

    The truth files are ``reference.png``, and ``mask.png`` (255 where input 1 is in focus)
    or ``quality<k>.png`` (input k's well-exposedness × 255).
    """
    demo = _demo_set(name)
    arrays = demo.build()
    return [
        save_image(_for_file(demo, key, array), Path(folder) / f"{key}.png")
        for key, array in arrays.items()
    ]


def export_demo_dataset(
    folder: str | PathLike[str], count: int, size: int, name: str = "mri-pet"
) -> Path:
    """Write ``count`` square crops of a demo set as a paired dataset, for trying datasets.

    Layout ``folder/<modality>/case<i>.png``, the crops stepping diagonally over the image,
    as :class:`fusevis.io.PairedDataset` reads it; a synthetic set's truth goes beside the
    inputs the same way (``folder/mask/case<i>.png``, ``folder/quality1/...``). Returns
    ``folder``.
    """
    demo = _demo_set(name)
    arrays = demo.build()
    height, width = arrays[demo.modalities[0]].shape
    if not 0 < size <= min(height, width):
        raise InputError(None, f"crop size {size} does not fit the {height}x{width} demo images")
    root = Path(folder)
    room = min(height, width) - size
    for key, array in arrays.items():
        scaled = _for_file(demo, key, array)
        for index in range(count):
            offset = (40 + 17 * index) % (room + 1)
            crop = scaled[offset : offset + size, offset : offset + size]
            save_image(crop, root / key / f"case{index}.png")
    return root
