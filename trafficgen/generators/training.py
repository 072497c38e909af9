"""The torch training loop of every neural model (flow generators and traffic-matrix models).

* :func:`make_optimizer` - AdamW + linear-warmup cosine schedule (transformers' scheduler).
* :func:`split_validation` - seeded train/validation index split.
* :class:`EarlyStopping` - tracks the best validation loss, keeps a copy of the best weights.
* :func:`progress_bar` - progress with the running loss: a rich bar on a terminal, plain lines
  in a log file (or a no-op).
* :func:`train_loop` - epochs of shuffled mini-batches over tensors with all of the above; hooks
  for what a model trains differently (its own optimiser, its own validation, its own batch
  order, a second optimiser stepped after each step, loss parts kept in the history).

Randomness only through the ``torch.Generator`` passed in (shuffling, split).
"""
from __future__ import annotations

import atexit
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from trafficgen.errors import ConfigError


def make_optimizer(model: torch.nn.Module, *, learning_rate: float, total_steps: int,
                   warmup_fraction: float = 0.05, weight_decay: float = 0.01):
    """AdamW (no decay on biases / norms / 1-D params) + cosine schedule with linear warmup."""
    from transformers import get_cosine_schedule_with_warmup

    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.95))
    warmup = max(1, int(round(warmup_fraction * total_steps)))
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup,
                                            num_training_steps=max(total_steps, warmup + 1))
    return opt, sched


def split_validation(n: int, val_fraction: float, generator: torch.Generator,
                     *, min_val: int = 1, min_train: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (train_idx, val_idx); ``val_idx`` is empty when ``val_fraction`` is 0 or ``n`` is
    too small to spare ``min_val`` rows while keeping ``min_train``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=generator)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val < min_val:
        n_val = min_val
    if n_val == 0 or n - n_val < min_train:
        return perm, perm[:0]
    return perm[n_val:], perm[:n_val]


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without a validation improvement of at least ``min_delta``;
    keeps a CPU copy of the best ``state_dict`` (restore it with :meth:`restore`). Frozen
    parameters (``requires_grad=False``, e.g. LEAD's language model) cannot change and are not
    copied."""

    patience: int | None = 5
    min_delta: float = 0.0
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = field(default=None, repr=False)
    partial: bool = field(default=False, repr=False)

    def step(self, loss: float, epoch: int, model: torch.nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = float(loss), epoch, 0
            frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
            self.partial = bool(frozen)
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                               if k not in frozen}
            return False
        self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state, strict=not self.partial)


@contextlib.contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True, show_loss: bool = True,
                 unit: str = "steps"):
    """Yield ``update(advance=1, **fields)``: a rich bar (with a ``loss`` column) on a terminal,
    periodic plain lines (step, loss, rate, ETA) on stderr when it is not one (a log file, CI);
    nothing when not enabled. See :mod:`trafficgen._progress`."""
    from trafficgen._progress import ProgressReporter

    with ProgressReporter(total, description, enabled=enabled, show_loss=show_loss, unit=unit) as reporter:
        yield reporter.update


def iterate_batches(n: int, batch_size: int, generator: torch.Generator | None = None,
                    *, index: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Index batches over ``index`` (default ``arange(n)``), shuffled when a generator is given."""
    index = torch.arange(n) if index is None else index
    if generator is not None:
        index = index[torch.randperm(len(index), generator=generator)]
    return [index[i:i + batch_size] for i in range(0, len(index), batch_size)]


def train_loop(model: torch.nn.Module, loss_fn: Callable[[torch.Tensor], tuple], *,
               n: int, epochs: int, batch_size: int, learning_rate: float | None = None,
               generator: torch.Generator, val_fraction: float | None = 0.1, patience: int | None = 5,
               progress: bool = True, description: str = "training", max_grad_norm: float | None = 1.0,
               warmup_fraction: float = 0.05, weight_decay: float = 0.01,
               sample_weights: torch.Tensor | None = None, max_steps: int | None = None,
               optimizer: Callable[[int], tuple] | None = None, validate: Callable[[], float] | None = None,
               epoch_batches: Callable[[torch.Tensor], list[torch.Tensor]] | None = None,
               after_step: Callable[[int, int], None] | None = None, restore_best: bool = True,
               min_delta: float = 0.0, show_epoch: bool = False, time_epochs: bool = False,
               precision: str = "fp32", gradient_accumulation_steps: int = 1,
               split: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Train ``model`` on rows ``0..n-1``.

    ``loss_fn(batch_index) -> (mean_loss, weight)`` or ``(mean_loss, weight, parts)`` computes the
    loss of the rows in ``batch_index`` (``weight``: e.g. the number of tokens, for the epoch mean;
    ``parts``: named loss terms, tensors or floats, whose weighted epoch means are kept in the
    history under their names). A seeded validation split (``val_fraction``) drives early stopping;
    the best weights are restored.
    ``sample_weights`` (``(n,)``, optional): each epoch draws its training rows with replacement
    in proportion to these weights (e.g. class balancing) instead of a plain shuffle.
    ``max_steps`` (optional) is the budget in optimiser steps instead of ``epochs``: the schedule
    spans it and training stops there (the last epoch may be partial).

    Hooks, for models that train differently (the defaults are the flow generators' loop):

    * ``optimizer(total_steps) -> (optimizer, scheduler or None)`` replaces :func:`make_optimizer`
      (``learning_rate``, ``warmup_fraction`` and ``weight_decay`` are then unused).
    * ``split=(train_idx, val_idx)``: the caller's split (e.g. drawn with :func:`split_validation`
      from the same generator beforehand, so that it can use the held-out rows afterwards); no
      draw for one here.
    * ``val_fraction=None``: no split and no random draw for one; every row trains. ``validate()``
      (only with ``val_fraction=None``) then returns the epoch's validation loss, called in eval
      mode without gradients: a model with its own validation set or its own validation noise.
    * ``epoch_batches(rows) -> [batch_index, ...]``: one epoch's batches of the training ``rows``
      instead of shuffled ``batch_size`` slices (it must draw from ``generator`` to stay seeded).
    * ``after_step(position, n_steps)``: called after every optimiser step with its position in
      its epoch (e.g. a GAN's generator step every few critic steps).
    * ``restore_best=False`` keeps the last weights; ``min_delta`` is the early-stopping margin.
    * ``show_epoch`` adds the epoch to the progress line; ``time_epochs`` records
      ``history["epoch_time_s"]``.

    Devices and scale-out:

    * ``precision`` ``"fp32"`` (default) | ``"bf16"`` | ``"fp16"``: ``loss_fn`` runs under
      ``torch.autocast`` on the model's device (checked by :func:`trafficgen._device.resolve_precision`;
      fp16 adds a gradient scaler). Weights and optimiser state stay fp32.
    * ``gradient_accumulation_steps`` k: one optimiser step per k batches (their mean gradient).
    * Data-parallel training: when the process was started by a launcher (``accelerate launch``,
      ``trafficgen train --num-processes N``, torchrun: ``WORLD_SIZE > 1``), accelerate's
      :class:`~accelerate.PartialState` joins the process group (gloo on the CPU, NCCL on GPUs).
      Every process draws the same seeded batches and takes every N-th of them (the last ones
      wrap around so all take the same number of steps); the loss functions' own draws from
      ``generator`` (a VAE's or a diffusion model's noise) come from a stream of each process's own
      (the main process's is the one-process stream) and at the end of every epoch every process
      takes the main process's generator state, so the next epoch's batches are again one
      partition; after each accumulation group the
      gradients are averaged over the processes (one flat all-reduce) and every process steps
      the same optimiser, so the weights stay equal. The epoch losses and the validation loss
      (each process scores a shard of the validation rows) are reduced too; only the main
      process shows progress and warns. The model is not wrapped in DDP because the loss
      functions reach into the module's parts (``model.lm_head.weight``), which bypasses
      ``DistributedDataParallel.forward``; the explicit all-reduce is the same arithmetic.

    With the defaults in one process, the arithmetic is today's, step for step (seeded results
    are unchanged).

    Early stopping (``patience``) needs a validation loss; without one the epoch's training loss
    is monitored only to pick the weights that ``restore_best`` restores.
    Returns the history ``{"train_loss": [...], "val_loss": [...], "best_epoch": int, "steps": int,
    "still_improving": bool}`` (+ ``"processes"`` when data-parallel); ``still_improving``
    (validation loss at its best on the last epoch and still falling by more than 0.2 %) also
    raises a warning: the budget was too small.
    """
    from trafficgen._device import autocast, resolve_precision

    accum = int(gradient_accumulation_steps)
    if accum < 1:
        raise ConfigError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
    device = model_device(model)
    amp_dtype = resolve_precision(precision, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    state = distributed_state(device)
    world, rank = (state.num_processes, state.process_index) if state is not None else (1, 0)
    if state is not None:
        for tensor in model.state_dict().values():  # start from the main process's weights
            torch.distributed.broadcast(tensor, src=0)
    main = rank == 0
    if split is not None:
        train_idx, val_idx = split
    elif val_fraction is None:
        train_idx, val_idx = torch.arange(n), torch.arange(0)
    else:
        if validate is not None:
            raise ConfigError("validate replaces the validation split: pass val_fraction=None with it")
        train_idx, val_idx = split_validation(n, val_fraction, generator)
    has_val = len(val_idx) > 0 or validate is not None
    n_batches = math.ceil(len(train_idx) / batch_size) if batch_size >= 1 else 0
    steps_per_epoch = math.ceil(math.ceil(n_batches / world) / accum)
    if max_steps is not None:
        if int(max_steps) < 1:
            raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
        epochs = math.ceil(int(max_steps) / max(steps_per_epoch, 1))
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    total_steps = int(max_steps) if max_steps is not None else epochs * steps_per_epoch
    if optimizer is not None:
        opt, sched = optimizer(total_steps)
    else:
        if learning_rate is None:
            raise ConfigError("train_loop needs learning_rate (or an optimizer factory)")
        opt, sched = make_optimizer(model, learning_rate=learning_rate, total_steps=total_steps,
                                    warmup_fraction=warmup_fraction, weight_decay=weight_decay)
    steps = 0
    stopper = EarlyStopping(patience=patience if has_val else None, min_delta=min_delta)
    history: dict = {"train_loss": [], "val_loss": [], "best_epoch": -1}
    if world > 1:
        history["processes"] = world
    if time_epochs:
        history["epoch_time_s"] = []
    with progress_bar(total_steps, description, enabled=progress and main) as update:
        for epoch in range(epochs):
            start = time.perf_counter()
            model.train()
            total, weight, parts = 0.0, 0, {}
            epoch_idx = train_idx
            if sample_weights is not None:
                draw = torch.multinomial(sample_weights[train_idx].double(), len(train_idx), replacement=True,
                                         generator=generator)  # (n_train,)
                epoch_idx = train_idx[draw]
            if epoch_batches is not None:
                batches = epoch_batches(epoch_idx)
            else:
                batches = iterate_batches(n, batch_size, generator, index=epoch_idx)
            if world > 1 and batches:  # this process's shard: every world-th batch, wrapped around
                batches = [batches[(i * world + rank) % len(batches)]
                           for i in range(math.ceil(len(batches) / world))]
            if state is not None and rank > 0:  # the loss's noise: a stream of this process's own
                generator.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator)) + rank)
            groups = [batches[i:i + accum] for i in range(0, len(batches), accum)]
            fields = {"epoch": f"{epoch + 1}/{epochs}"} if show_epoch else {}
            for position, group in enumerate(groups):
                if steps == total_steps:
                    break
                steps += 1
                for j, batch in enumerate(group):
                    with autocast(device, precision):
                        loss, w, *extra = loss_fn(batch)
                    if j == 0:
                        opt.zero_grad(set_to_none=True)
                    scaled = loss / len(group) if len(group) > 1 else loss
                    (scaled if scaler is None else scaler.scale(scaled)).backward()
                    total += float(loss.detach()) * w
                    weight += w
                    for name, value in (extra[0] if extra else {}).items():
                        parts[name] = parts.get(name, 0.0) + float(value) * w
                if state is not None:
                    all_reduce_gradients(model, state)
                if scaler is not None:
                    scaler.unscale_(opt)
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                if sched is not None:
                    sched.step()
                if after_step is not None:
                    after_step(position, len(groups))
                update(1, loss=float(loss.detach()), **fields)
            if state is not None:
                total, weight, parts = _reduce_sums(state, total, weight, parts)
            history["train_loss"].append(total / max(weight, 1))
            for name, value in parts.items():
                history.setdefault(name, []).append(value / max(weight, 1))
            monitor = history["train_loss"][-1]
            if validate is not None:
                model.eval()
                with torch.no_grad():
                    val = float(validate())
                model.train()
                if state is not None:
                    val = _reduce_sums(state, val, 1, {})[0] / world
                history["val_loss"].append(val)
                monitor = history["val_loss"][-1]
            elif len(val_idx):
                if state is None:
                    history["val_loss"].append(evaluate_loss(model, loss_fn, val_idx, batch_size))
                else:
                    v_total, v_weight = loss_sums(model, loss_fn, val_idx[rank::world], batch_size)
                    v_total, v_weight, _ = _reduce_sums(state, v_total, v_weight, {})
                    history["val_loss"].append(v_total / max(v_weight, 1))
                monitor = history["val_loss"][-1]
            stop = stopper.step(monitor, epoch, model) if restore_best or has_val else False
            if state is not None:  # the main process's generator: the same batches next epoch
                sync_generator(generator, state)
            if time_epochs:
                history["epoch_time_s"].append(time.perf_counter() - start)
            if stop:
                update(total_steps - steps)
                break
    if restore_best:
        stopper.restore(model)
    model.eval()
    history["best_epoch"] = stopper.best_epoch
    history["steps"] = steps
    val = history["val_loss"]
    history["still_improving"] = bool(len(val) >= 2 and stopper.best_epoch == len(val) - 1
                                      and val[-2] - val[-1] > 0.002 * abs(val[-1]))
    if history["still_improving"] and main:
        import warnings

        warnings.warn(f"{description}: validation loss still falling at the end of training "
                      f"({val[-2]:.4f} -> {val[-1]:.4f} after {steps} steps); the model may be under-trained: "
                      "raise the training budget", UserWarning, stacklevel=2)
    return history


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for an empty module)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def place_modules(device_spec, *modules) -> torch.device:
    """The torch device of ``device_spec`` (see :func:`trafficgen._device.resolve_device`), with
    every module given (None skipped) moved there, in place, when it is elsewhere: how a model's
    ``_placed`` keeps a loaded (CPU) network until it is first used, or follows a changed ``device``."""
    from trafficgen._device import resolve_device, same_device

    device = resolve_device(device_spec)
    for module in modules:
        if module is not None and not same_device(model_device(module), device):
            module.to(device)  # nn.Module.to moves the parameters in place
    return device


def launched_world_size() -> int:
    """The number of processes a launcher started this one among (1 when not launched)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """Whether this process writes outputs: not launched, or rank 0 of a launched group."""
    import os

    return int(os.environ.get("RANK", "0") or 0) == 0


def distributed_state(device: torch.device):
    """accelerate's :class:`~accelerate.PartialState` of a launched group (``WORLD_SIZE > 1``,
    gloo on the CPU), or None in a single process."""
    if launched_world_size() <= 1:
        return None
    try:
        from accelerate import PartialState
    except ImportError as exc:  # a real dependency, but say what is missing
        raise ConfigError("data-parallel training needs the 'accelerate' package: pip install accelerate") from exc

    state = PartialState(cpu=device.type == "cpu")
    if state.num_processes <= 1:
        return None
    if not _LEAVE_AT_EXIT:  # once per process, however many models it trains
        _LEAVE_AT_EXIT.append(state)
        atexit.register(leave_group, state)
    return state


#: The group this process leaves at exit: gloo's threads still running when the interpreter exits
#: abort a process ("terminate called without an active exception", exit -6), seen on a busy CPU
#: in ``tm train --num-processes 2`` after the model was written, and again (2026-12-03, once in
#: the suite under load) after a plain destroy at exit, in rank 1 while rank 0 was still running.
_LEAVE_AT_EXIT: list = []

#: Seconds :func:`leave_group` waits for the other processes of a gloo group before leaving anyway.
LEAVE_TIMEOUT_S = 60.0


def leave_group(state, *, timeout_s: float = LEAVE_TIMEOUT_S) -> bool:
    """Leave the launched group of ``state`` (called at exit): on gloo, first wait until every
    process has reached this point (``monitored_barrier``, at most ``timeout_s``; a process that
    crashed or left early is not waited for longer), so that no process tears its connections
    down while another is still using them; then destroy the group and collect what still refers
    to it while the interpreter is fully alive. Returns whether all processes were met (False
    without a group, on a timeout, or on a backend without ``monitored_barrier``)."""
    import gc
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return False
    met = False
    if dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=timedelta(seconds=float(timeout_s)))
            met = True
        except RuntimeError:  # a process is missing: leave anyway
            met = False
    state.destroy_process_group()
    gc.collect()
    return met


def all_reduce_gradients(model: torch.nn.Module, state) -> None:
    """Average the gradients over the processes of ``state`` in one flat all-reduce (the gradients,
    a missing one as zeros, and one has-a-gradient flag per parameter, summed; then divided by the
    number of processes). A parameter without a gradient on every process keeps none (so AdamW
    skips it as in one process)."""
    from accelerate.utils import reduce

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flags = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
    flat = reduce(torch.cat([g.reshape(-1) for g in grads] + [flags]), reduction="sum")  # (G + P,)
    has = flat[-len(params):].tolist()
    flat = flat[:-len(params)] / state.num_processes
    offset = 0
    for p, h in zip(params, has, strict=True):
        if h > 0:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def sync_generator(generator: torch.Generator, state) -> None:
    """Give every process of ``state`` the main process's ``generator`` state (a broadcast)."""
    device = state.device if state.device.type == "cuda" else torch.device("cpu")
    tensor = generator.get_state().to(device)
    torch.distributed.broadcast(tensor, src=0)
    generator.set_state(tensor.cpu())


def _reduce_sums(state, total: float, weight: float, parts: dict) -> tuple[float, float, dict]:
    """Sum ``total``, ``weight`` and each part over the processes (float64 on the state's device)."""
    from accelerate.utils import reduce

    names = sorted(parts)
    vec = torch.tensor([float(total), float(weight)] + [float(parts[k]) for k in names],
                       dtype=torch.float64, device=state.device if state.device.type != "mps" else "cpu")
    vec = reduce(vec, reduction="sum").tolist()
    return vec[0], vec[1], dict(zip(names, vec[2:], strict=True))


def evaluate_loss(model: torch.nn.Module, loss_fn, index: torch.Tensor, batch_size: int) -> float:
    """Weighted mean of ``loss_fn`` over ``index`` in eval mode."""
    total, weight = loss_sums(model, loss_fn, index, batch_size)
    return total / max(weight, 1)


@torch.no_grad()
def loss_sums(model: torch.nn.Module, loss_fn, index: torch.Tensor, batch_size: int) -> tuple[float, int]:
    """(sum of ``loss * weight``, sum of weights) of ``loss_fn`` over ``index`` in eval mode."""
    model.eval()
    total, weight = 0.0, 0
    for batch in iterate_batches(len(index), batch_size, index=index):
        loss, w, *_ = loss_fn(batch)
        total += float(loss) * w
        weight += w
    model.train()
    return total, weight


def seeded_init(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a module with the global torch RNG seeded, without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__: Sequence[str] = ["make_optimizer", "split_validation", "EarlyStopping", "progress_bar",
                          "iterate_batches", "train_loop", "evaluate_loss", "loss_sums", "seeded_init",
                          "count_parameters", "model_device", "place_modules", "is_main_process", "launched_world_size",
                          "distributed_state", "all_reduce_gradients", "sync_generator"]
