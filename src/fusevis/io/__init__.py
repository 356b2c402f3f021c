"""Reading and writing images and volumes, colour handling, normalisation, datasets."""

from fusevis.io.color import luminance, recolor, rgb_to_ycbcr, ycbcr_to_rgb
from fusevis.io.dataset import PairedDataset
from fusevis.io.demo import DEMO_SETS, demo_arrays, export_demo, export_demo_dataset, load_demo
from fusevis.io.image import Image
from fusevis.io.loading import ImageSet, image_from_array, load_image, load_images, volume_slices
from fusevis.io.normalize import normalize
from fusevis.io.writers import save_image, to_uint8

__all__ = [
    "DEMO_SETS",
    "Image",
    "ImageSet",
    "PairedDataset",
    "demo_arrays",
    "export_demo",
    "export_demo_dataset",
    "image_from_array",
    "load_demo",
    "load_image",
    "load_images",
    "luminance",
    "normalize",
    "recolor",
    "rgb_to_ycbcr",
    "save_image",
    "to_uint8",
    "volume_slices",
    "ycbcr_to_rgb",
]
