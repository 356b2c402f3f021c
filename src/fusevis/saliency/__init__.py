"""Exact per-pixel saliency: receptive fields, Jacobians, guidance and influence maps."""

from fusevis.saliency.attribution import (
    METHODS,
    Gradient,
    GradientTimesInput,
    IntegratedGradients,
    SmoothGrad,
)
from fusevis.saliency.boxes import Box, GridField
from fusevis.saliency.cache import MapCache, cached_maps
from fusevis.saliency.explanation import Explanation
from fusevis.saliency.field import ReceptiveField, Window
from fusevis.saliency.jacobian import STRATEGIES, PixelJacobian
from fusevis.saliency.locality import Locality, analyse_locality
from fusevis.saliency.maps import (
    Cancelled,
    SaliencyMaps,
    compute_maps,
    guidance_maps,
    influence_maps,
)
from fusevis.saliency.volumetric import (
    VolumeMaps,
    VoxelJacobian,
    guidance_volumes,
    influence_volumes,
    row_planes,
    volume_maps,
)

__all__ = [
    "METHODS",
    "STRATEGIES",
    "Box",
    "Cancelled",
    "Explanation",
    "Gradient",
    "GridField",
    "GradientTimesInput",
    "IntegratedGradients",
    "Locality",
    "MapCache",
    "PixelJacobian",
    "ReceptiveField",
    "SaliencyMaps",
    "SmoothGrad",
    "VolumeMaps",
    "VoxelJacobian",
    "Window",
    "analyse_locality",
    "cached_maps",
    "compute_maps",
    "guidance_maps",
    "guidance_volumes",
    "influence_maps",
    "influence_volumes",
    "row_planes",
    "volume_maps",
]
