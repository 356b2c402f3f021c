"""Fixtures of the saliency tests; the zoo of networks lives in :mod:`tests.saliency.zoo`."""

from __future__ import annotations

import pytest
import torch

from .zoo import ALL, Case, ReferenceRows, case_and_reference, case_and_rows


@pytest.fixture(params=ALL)
def case_with_reference(request: pytest.FixtureRequest) -> tuple[Case, tuple[torch.Tensor, ...]]:
    return case_and_reference(request.param)


@pytest.fixture(params=ALL)
def case_with_rows(request: pytest.FixtureRequest) -> tuple[Case, ReferenceRows]:
    return case_and_rows(request.param)
