"""Engine tests run with few torch threads: the CI machine has two cores."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)
