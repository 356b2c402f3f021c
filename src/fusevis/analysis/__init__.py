"""Case studies: one image set per network (report) and whole datasets on Dask (analyze)."""

from fusevis.analysis.regions import automatic_regions, region_statistics
from fusevis.analysis.results import SetResult, analyse_set

__all__ = ["SetResult", "analyse_set", "automatic_regions", "region_statistics"]
