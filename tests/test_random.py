"""The one randomness rule: None = fresh entropy, int = seed, Generator = used as is; no global seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trafficgen._random import check_random_state, seed_from, torch_generator, torch_seeded
from trafficgen.errors import ConfigError


def test_check_random_state():
    assert check_random_state(5).integers(1000) == np.random.default_rng(5).integers(1000)
    g = np.random.default_rng(1)
    assert check_random_state(g) is g
    draws = {int(check_random_state(None).integers(2**62)) for _ in range(4)}
    assert len(draws) == 4  # fresh entropy every time
    with pytest.raises(ConfigError):
        check_random_state("seed")


def test_seed_from_and_torch_generator():
    assert seed_from(7) == 7 and seed_from(np.int64(7)) == 7
    assert seed_from(np.random.default_rng(3)) == seed_from(np.random.default_rng(3))
    assert seed_from(None) != seed_from(None)
    assert torch.equal(torch.randn(3, generator=torch_generator(4)), torch.randn(3, generator=torch_generator(4)))


def test_torch_seeded_leaves_global_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with torch_seeded(9) as seed:
        inside = torch.rand(3)
    assert seed == 9
    torch.manual_seed(9)
    assert torch.equal(inside, torch.rand(3))
    torch.manual_seed(123)
    with torch_seeded(9):
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected)


def test_no_global_seeding_in_the_package():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "trafficgen"
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "_random.py":
            continue
        for k, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if ("torch.manual_seed(" in code or "np.random.seed(" in code or "random.seed(" in code) and \
                    "fork_rng" not in path.read_text().splitlines()[max(0, k - 2)]:
                offenders.append(f"{path.relative_to(root)}:{k}")
    assert not offenders, offenders
