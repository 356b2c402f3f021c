"""The shared Dask client: work runs on it, and it is closed on leaving, error or not."""

import pytest

from fusevis.analysis.cluster import dask_client


def _square(value: int) -> int:
    return value * value


def test_a_local_client_computes_and_is_closed_even_after_an_error() -> None:
    with pytest.raises(RuntimeError, match="stop"), dask_client(1, None, processes=False) as c:
        assert c.submit(_square, 7).result() == 49  # type: ignore[attr-defined]
        held = c
        raise RuntimeError("stop")
    assert held.status == "closed"  # type: ignore[attr-defined]
    assert held.cluster.status.name == "closed"  # type: ignore[attr-defined]
