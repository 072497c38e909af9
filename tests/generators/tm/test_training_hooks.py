"""The train_loop hooks the traffic-matrix models train through (generators/training.py)."""
from __future__ import annotations

import pytest
import torch

from trafficgen.errors import ConfigError
from trafficgen.generators.training import EarlyStopping, train_loop


def _problem(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 1)
    return net, x, y


def _adam(net):
    return lambda steps: (torch.optim.Adam(net.parameters(), lr=0.05), None)


def test_no_split_draws_nothing_and_validate_drives_early_stopping():
    net, x, y = _problem()
    gen = torch.Generator().manual_seed(1)

    def loss_fn(idx):
        return torch.mean((net(x[idx])[:, 0] - y[idx]) ** 2), len(idx)

    seen = []

    def batches(rows):
        seen.append(rows.tolist())
        return [rows[torch.randperm(len(rows), generator=gen)][i:i + 8] for i in range(0, len(rows), 8)]

    vals = iter([3.0, 2.0, 2.5, 2.4, 9.0])
    hist = train_loop(net, loss_fn, n=len(x), epochs=5, batch_size=8, generator=gen, val_fraction=None,
                      validate=lambda: next(vals), patience=2, optimizer=_adam(net), epoch_batches=batches,
                      progress=False, time_epochs=True)
    assert seen[0] == list(range(40))  # every row trains, in order, before the hook shuffles
    assert hist["val_loss"] == [3.0, 2.0, 2.5, 2.4] and hist["best_epoch"] == 1  # stopped after 2 bad epochs
    assert len(hist["epoch_time_s"]) == 4 and hist["steps"] == 4 * 5
    # val_fraction=None and no hook: the generator's first draw is the first epoch's shuffle
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    net2, _, _ = _problem()
    order = []
    train_loop(net2, lambda idx: (order.append(idx) or loss_fn(idx)), n=len(x), epochs=1, batch_size=40,
               generator=a, val_fraction=None, optimizer=_adam(net2), progress=False)
    assert torch.equal(order[0], torch.randperm(40, generator=b))
    with pytest.raises(ConfigError):
        train_loop(net, loss_fn, n=len(x), epochs=1, batch_size=8, generator=gen, validate=lambda: 0.0,
                   optimizer=_adam(net), progress=False)


def test_loss_parts_after_step_and_keeping_the_last_weights():
    net, x, y = _problem()
    calls = []

    def loss_fn(idx):
        err = torch.mean((net(x[idx])[:, 0] - y[idx]) ** 2)
        return 2 * err, len(idx), {"half": err.detach()}

    hist = train_loop(net, loss_fn, n=len(x), epochs=3, batch_size=16, generator=torch.Generator().manual_seed(0),
                      val_fraction=None, patience=None, restore_best=False, max_grad_norm=None,
                      optimizer=_adam(net), after_step=lambda k, n: calls.append((k, n)), progress=False)
    assert calls == [(0, 3), (1, 3), (2, 3)] * 3  # 40 rows in batches of 16
    assert hist["half"] == pytest.approx([v / 2 for v in hist["train_loss"]], rel=1e-12)
    assert hist["best_epoch"] == -1  # nothing monitored: the last weights are kept
    last = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        final = float(torch.mean((net(x)[:, 0] - y) ** 2))
    assert final < hist["train_loss"][0] / 2
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in last.items())


def test_frozen_parameters_are_not_copied_but_best_weights_come_back():
    net, x, y = _problem()
    frozen = torch.nn.Linear(3, 3)
    frozen.requires_grad_(False)
    model = torch.nn.ModuleDict({"frozen": frozen, "head": net})

    def loss_fn(idx):
        return torch.mean((net(frozen(x[idx]) * 0 + x[idx])[:, 0] - y[idx]) ** 2), len(idx)

    vals = iter([1.0, 5.0, 5.0])
    snapshot = {}

    def validate():
        v = next(vals)
        if v == 1.0:
            snapshot.update({k: t.clone() for k, t in net.state_dict().items()})
        return v

    train_loop(model, loss_fn, n=len(x), epochs=3, batch_size=8, generator=torch.Generator().manual_seed(0),
               val_fraction=None, validate=validate, patience=None, optimizer=_adam(net), progress=False)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in snapshot.items())  # epoch 0's weights
    stopper = EarlyStopping()
    stopper.step(1.0, 0, model)
    assert set(stopper.best_state) == {"head.weight", "head.bias"}  # the frozen layer is not copied
