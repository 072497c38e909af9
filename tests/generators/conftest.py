"""Generator tests train tiny models: one torch thread each (on a shared 2-core machine two
threads made tiny-model training up to ~20x slower when the other core was busy)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
