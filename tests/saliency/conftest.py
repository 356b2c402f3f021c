"""Fixtures of the saliency tests; the zoo of networks lives in :mod:`tests.saliency.zoo`."""

from __future__ import annotations

import pytest
import torch

from .zoo import ALL, Case, case_and_reference


@pytest.fixture(params=ALL)
def case_with_reference(request: pytest.FixtureRequest) -> tuple[Case, tuple[torch.Tensor, ...]]:
    return case_and_reference(request.param)
