"""Writing small real DICOM files for the tests (pydicom, explicit VR little endian)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _dataset(path: Path, pixels: np.ndarray) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.5, 0.6]
    ds.SliceThickness = 2.0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def write_dicom_series(
    folder: Path,
    volume: np.ndarray,
    shuffle: bool = False,
    modality: str = "CT",
    series_uid: str | None = None,
    description: str | None = None,
    prefix: str = "img",
) -> Path:
    """Write volume[k] as slice k at z = 3·k mm (file names in a shuffled order).

    With ``series_uid`` the files carry that SeriesInstanceUID (and ``description``), so
    that several series can share one folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(1).permutation(len(volume)) if shuffle else range(len(volume))
    for file_index, k in enumerate(order):
        path = folder / f"{prefix}{file_index:03d}.dcm"
        ds = _dataset(path, volume[k])
        ds.Modality = modality
        if series_uid is not None:
            ds.SeriesInstanceUID = series_uid
        if description is not None:
            ds.SeriesDescription = description
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * float(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = int(file_index)
        ds.RescaleSlope = 2
        ds.RescaleIntercept = -100
        ds.save_as(path, enforce_file_format=True)
    return folder


def write_multiframe_dicom(path: Path, frames: np.ndarray) -> Path:
    """Write a multi-frame DICOM file holding ``frames`` (F, rows, cols)."""
    ds = _dataset(path, frames)
    ds.NumberOfFrames = len(frames)
    ds.save_as(path, enforce_file_format=True)
    return path
