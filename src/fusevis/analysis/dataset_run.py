"""``fusevis analyze``: every image set × every network of a dataset, on Dask.

Each (image set, network) pair is one Dask task that writes its own Zarr group
``<set>/<network>`` (fused image, guidance maps, influence shares, metrics as attributes)
and marks it ``complete`` last. A rerun skips complete groups and redoes the rest, so an
interrupted run resumes. A summary table of the metrics goes beside the store as CSV and
Parquet. Where the dataset holds ground truth (a focus-mask or per-input quality subfolder,
named with ``truth``), each group is also scored against it
(:mod:`fusevis.analysis.truth`) and the scores join its summary row.
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import zarr

from fusevis.errors import FuseVisError

if TYPE_CHECKING:
    from fusevis.models.specs import ModelSpec

COMPLETE = "complete"


@dataclass(frozen=True)
class Job:
    """One image set with one network; everything a worker needs, as plain values."""

    set_name: str
    paths: tuple[str, ...]
    network: str
    spec: str
    weights: str
    store: str
    influence: bool
    threads: int
    model: ModelSpec | None = None
    normalize: str = "minmax"
    color: str = "gray"
    truth: tuple[str, ...] = ()
    convention: str = "fusevis"


def summary_paths(store: Path) -> tuple[Path, Path]:
    """The CSV and Parquet summaries beside ``store`` (``runs.zarr`` → ``runs.csv``)."""
    base = store.with_suffix("") if store.suffix == ".zarr" else store
    return base.with_name(base.name + ".csv"), base.with_name(base.name + ".parquet")


def group_name(set_name: str, network: str) -> str:
    """The Zarr group of one image set and network."""
    return f"{set_name}/{network}"


def is_complete(store: Path, group: str, convention: str | None = None) -> bool:
    """True when ``group`` exists in ``store`` and was marked complete.

    With ``convention``, only if its metrics were computed under that metric convention.
    """
    try:
        attrs = zarr.open_group(store / group, mode="r").attrs
        same = convention is None or attrs.get("metric_convention", "fusevis") == convention
        return bool(attrs.get(COMPLETE, False)) and same
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError):
        return False


def run_job(job: Job) -> dict[str, object]:
    """Compute one group on a worker and write it; returns its summary row."""
    import torch

    from fusevis.analysis.results import analyse_set
    from fusevis.io import load_images
    from fusevis.models.registry import resolve_model
    from fusevis.models.specs import build_model

    torch.set_num_threads(max(1, job.threads))
    image_set = load_images(
        [Path(p) for p in job.paths],
        name=job.set_name,
        normalize=job.normalize,  # type: ignore[arg-type]
        color=job.color,  # type: ignore[arg-type]
    )
    if job.model is not None:
        model = build_model(job.model, len(image_set))
    else:
        model = resolve_model(job.spec, job.weights)
    result = analyse_set(model, image_set, influence=job.influence, convention=job.convention)
    scores: dict[str, object] = {}
    if job.truth:
        from fusevis.analysis.truth import load_truth, score_result

        ground = load_truth(job.truth, len(image_set), image_set.shape)
        scores = {
            key: None if isinstance(value, float) and not np.isfinite(value) else value
            for key, value in score_result(result, ground).row().items()
        }
    path = Path(job.store) / group_name(job.set_name, job.network)
    if path.exists():
        shutil.rmtree(path)  # a group left incomplete by an interrupted run
    group = zarr.open_group(path, mode="w")
    group.create_array("fused", data=result.fused)
    for k, guidance in enumerate(result.guidance):
        group.create_array(f"guidance_{k}", data=guidance)
    for k, share in enumerate(result.share or []):
        group.create_array(f"influence_share_{k}", data=share)
    row: dict[str, object] = {
        "set": job.set_name,
        "network": job.network,
        "metric_convention": result.convention,
        **result.metrics,
        **scores,
    }
    finished = datetime.datetime.now(datetime.UTC).isoformat()
    group.attrs.update(
        {
            "metrics": result.metrics,
            "metric_convention": result.convention,
            "inputs": list(job.paths),
            "computed_at": finished,
        }
    )
    if scores:
        group.attrs["truth"] = scores
    group.attrs[COMPLETE] = True  # last: a group without it is redone
    return row


def collect_summary(store: Path, jobs: Sequence[Job]) -> pd.DataFrame:
    """The metrics of every complete group, one row per (set, network), in job order."""
    rows = []
    for job in jobs:
        group_path = store / group_name(job.set_name, job.network)
        if not is_complete(store, group_name(job.set_name, job.network), job.convention):
            continue
        attrs = zarr.open_group(group_path, mode="r").attrs
        rows.append(
            {
                "set": job.set_name,
                "network": job.network,
                "metric_convention": attrs.get("metric_convention", "fusevis"),
                **attrs["metrics"],
                **attrs.get("truth", {}),
            }
        )
    return pd.DataFrame(rows)


def plan_jobs(
    data: Path,
    modalities: Sequence[str],
    models: Sequence[str | ModelSpec],
    weights: Sequence[str],
    store: Path,
    influence: bool,
    threads: int,
    loading: tuple[str, str] = ("minmax", "gray"),
    truth: Sequence[str] = (),
    convention: str = "fusevis",
) -> list[Job]:
    """One job per image set and network of the dataset.

    ``models`` are ``--model`` specs (with ``weights`` by position) or
    :class:`~fusevis.models.specs.ModelSpec` values (conventions, names, parts);
    ``loading`` is the images' ``(normalize, color)``; ``truth`` names ground-truth
    subfolders paired by file name like the modalities (one focus mask for two inputs, or
    one quality map per input).
    """
    from fusevis.io.dataset import PairedDataset
    from fusevis.models.specs import ModelSpec

    if truth and not (len(truth) == len(modalities) or (len(truth) == 1 == len(modalities) - 1)):
        raise FuseVisError(
            f"{len(truth)} truth folder(s) for {len(modalities)} modalities: give one focus "
            "mask folder (two modalities) or one quality folder per modality"
        )
    dataset = PairedDataset(data, [*modalities, *truth])
    count = len(modalities)
    if len(weights) > len(models):
        raise FuseVisError(f"{len(weights)} --weights for {len(models)} --model")
    paired = list(weights) + [None] * (len(models) - len(weights))
    specs = [
        m if isinstance(m, ModelSpec) else ModelSpec(m, w)
        for m, w in zip(models, paired, strict=True)
    ]
    names = [spec.label for spec in specs]
    if len(set(names)) != len(names):
        raise FuseVisError(f"networks named twice: {', '.join(names)}; give each a --name")
    return [
        Job(
            set_name=dataset.names[index],
            paths=tuple(str(p.resolve()) for p in dataset.paths(index)[:count]),
            truth=tuple(str(p.resolve()) for p in dataset.paths(index)[count:]),
            network=name,
            spec=spec.model or "",
            weights=spec.weights or "DEFAULT",
            store=str(store.resolve()),
            influence=influence,
            threads=threads,
            model=spec,
            normalize=loading[0],
            color=loading[1],
            convention=convention,
        )
        for index in range(len(dataset))
        for name, spec in zip(names, specs, strict=True)
    ]


def analyze(
    data: Path,
    modalities: Sequence[str],
    models: Sequence[str | ModelSpec],
    store: Path,
    weights: Sequence[str] = (),
    influence: bool = False,
    workers: int = 2,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    loading: tuple[str, str] = ("minmax", "gray"),
    truth: Sequence[str] = (),
    convention: str = "fusevis",
) -> pd.DataFrame:
    """Run every missing (set, network) group on Dask and write the summary tables.

    Parameters
    ----------
    scheduler : str, optional
        ``tcp://HOST:PORT`` of an existing cluster; default a ``LocalCluster`` of
        ``workers`` single-threaded worker processes on this machine.
    progress : callable(done, total), optional
        Called as groups finish (groups complete before the run count as done).
    loading : (normalize, color)
        How the images load (``fusevis.models.specs.choose_loading`` for conventions).
    truth : sequence of str
        Ground-truth subfolders (see :func:`plan_jobs`); their scores join the summary.
    convention : str
        The metric convention (``fusevis``, ``cddfuse``, ``vifb``); groups computed under
        another one are computed again.
    """
    from distributed import as_completed

    from fusevis.analysis.cluster import dask_client

    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = plan_jobs(
        data,
        modalities,
        models,
        weights,
        store,
        influence,
        threads,
        loading,
        truth=truth,
        convention=convention,
    )
    root = zarr.open_group(store, mode="a")
    for name in dict.fromkeys(job.set_name for job in jobs):
        root.require_group(name)
    pending = [
        j for j in jobs if not is_complete(store, group_name(j.set_name, j.network), j.convention)
    ]
    done = len(jobs) - len(pending)
    if progress is not None:
        progress(done, len(jobs))
    if pending:
        with dask_client(workers, scheduler) as client:
            futures = client.map(run_job, pending, pure=False)
            for future in as_completed(futures):
                future.result()
                done += 1
                if progress is not None:
                    progress(done, len(jobs))
    summary = collect_summary(store, jobs)
    csv_path, parquet_path = summary_paths(store)
    summary.to_csv(csv_path, index=False)
    summary.to_parquet(parquet_path, index=False)
    return summary


def group_arrays(store: Path, set_name: str, network: str) -> dict[str, np.ndarray]:
    """The arrays of one complete group (for tests and users)."""
    group = zarr.open_group(store / group_name(set_name, network), mode="r")
    return {name: np.asarray(array[...]) for name, array in group.arrays()}
