"""The Dask client that ``fusevis analyze`` and ``--all-slices`` runs compute on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def dask_client(workers: int, scheduler: str | None, processes: bool = True) -> Iterator[object]:
    """A Dask client: of ``scheduler`` (``tcp://HOST:PORT``), else of a local cluster.

    The local cluster has ``workers`` single-threaded workers, processes unless
    ``processes=False`` (threads of this process: quick to start, for tests). The client,
    and the local cluster, are closed on leaving.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
