"""The one randomness rule of the package.

``random_state`` is ``None`` (fresh entropy from the operating system), an ``int`` (a seed: same
seed, same output, bit for bit on CPU) or a ``numpy.random.Generator`` (used as is). Nothing in the
package seeds a global generator: torch work that needs seeded global state (``nn.Module``
initialisation, dropout) runs inside :func:`torch_seeded`, which restores the caller's global
torch state afterwards.
"""
from __future__ import annotations

import contextlib

import numpy as np

from trafficgen.errors import ConfigError

__all__ = ["check_random_state", "seed_from", "torch_generator", "torch_seeded"]


def check_random_state(random_state) -> np.random.Generator:
    """A ``numpy.random.Generator`` for ``random_state`` (None, int or Generator)."""
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(None if random_state is None else int(random_state))
    if isinstance(random_state, np.random.Generator):
        return random_state
    raise ConfigError(f"random_state must be None, an int or a numpy Generator, got {type(random_state).__name__}")


def seed_from(random_state, *, bits: int = 63) -> int:
    """An integer seed: ``random_state`` itself when it is an int, else one drawn from it
    (None: fresh entropy)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).integers(2**bits - 1))


def torch_generator(random_state, device: str = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded with :func:`seed_from` (``random_state``)."""
    import torch

    return torch.Generator(device=device).manual_seed(seed_from(random_state))


@contextlib.contextmanager
def torch_seeded(random_state):
    """Run the block with torch's global CPU generator seeded from ``random_state``; the caller's
    global state is restored afterwards (``torch.random.fork_rng``). Yields the integer seed."""
    import torch

    seed = seed_from(random_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield seed
