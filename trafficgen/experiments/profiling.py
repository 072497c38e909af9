"""Efficiency profiling of flow generators: size, training time, peak memory, generation latency.

:func:`profile_generator` measures one fitted generator (fp32 or int8, see
:mod:`trafficgen.generators.quantization`):

* ``parameters``: trainable parameters + int8 weights (``qweight`` elements) of quantized layers;
* ``disk_mb``: size of the saved directory (saved to a temporary folder when not given);
* ``train_s_per_epoch`` / ``train_peak_rss_mb`` / ``train_peak_mb``: a fresh copy of the same
  hyper-parameters trained for ``epochs`` epochs on ``train_flows`` (skipped for quantized
  models: not trainable);
* ``gen_ms_per_sample_b{B}`` / ``gen_peak_rss_mb`` / ``gen_peak_mb``: wall time of
  ``sample(B)`` divided by ``B`` (median of ``repeats`` runs, after a small warm-up call), for
  each batch size.

Peak memory: on CPU the process resident set size (RSS) sampled every 5 ms by a background
thread (psutil). ``*_peak_rss_mb`` is the peak RSS of the whole process during the phase (what
the issue and the seed's table call memory; it includes the Python/torch baseline of a few
hundred MB); ``*_peak_mb`` is the increase over the RSS at the start of the phase, which stays
near 0 in a long-running process whose allocator reuses memory freed earlier. On CUDA,
``torch.cuda.max_memory_allocated`` after a reset (absolute and increase).

:func:`efficiency_table_markdown` renders rows as the seed's efficiency table (one row per model).
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path

MB = 1024.0 ** 2


def count_parameters(generator) -> int:
    """Parameters of ``generator.model_`` (int8 weights of quantized layers count once each)."""
    from trafficgen.generators.quantization import QUANTIZED_TYPES

    model = getattr(generator, "model_", None)
    if model is None:
        return 0
    n = sum(p.numel() for p in model.parameters())
    seen = set()
    for m in model.modules():
        if isinstance(m, QUANTIZED_TYPES) and m.qweight.data_ptr() not in seen:  # tied: once
            seen.add(m.qweight.data_ptr())
            n += m.qweight.numel()
    return int(n)


def directory_size(path: str | Path) -> int:
    """Total bytes of the files under ``path``."""
    path = Path(path)
    return int(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()))


class PeakMemory:
    """Context manager: peak memory during the block: ``self.peak_rss_mb`` (absolute process
    RSS, MB) and ``self.peak_mb`` (increase over the start of the block, MB).

    ``device="cpu"``: process RSS sampled every ``interval_s`` by a daemon thread;
    ``device="cuda"``: ``torch.cuda.max_memory_allocated`` (reset on entry).
    """

    def __init__(self, *, device: str = "cpu", interval_s: float = 0.005):
        self.device = device
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.peak_rss_mb = 0.0

    def __enter__(self):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        import psutil

        self._proc = psutil.Process(os.getpid())
        self._base = self._peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak_rss_mb = torch.cuda.max_memory_allocated() / MB
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / MB
            return False
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = (self._peak - self._base) / MB
        self.peak_rss_mb = self._peak / MB
        return False


def _device(generator) -> str:
    return str(getattr(generator, "device", "cpu") or "cpu")


def generation_latency(generator, batch_size: int, *, repeats: int = 3, random_state: int = 0) -> float:
    """Median milliseconds per sample of ``generator.sample(batch_size)``. One small warm-up call
    (at most 16 samples: lazy initialisation, not a second full batch) comes first."""
    generator.sample(min(int(batch_size), 16), random_state=random_state)
    times = []
    for r in range(int(repeats)):
        t0 = time.perf_counter()
        generator.sample(int(batch_size), random_state=random_state + r + 1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0 / int(batch_size))


def training_time(generator, train_flows, *, epochs: int = 1) -> tuple[float, float, float]:
    """(seconds per epoch, peak RSS MB, peak increase MB) of training a fresh copy of ``generator``'s
    hyper-parameters for ``epochs`` epochs on ``train_flows`` (no validation split, no early stop)."""
    params = generator.get_params()
    over = {"epochs": int(epochs), "progress": False, "val_fraction": 0.0, "patience": None}
    fresh = type(generator)(**{**params, **{k: v for k, v in over.items() if k in params}})
    with PeakMemory(device=_device(generator)) as mem:
        t0 = time.perf_counter()
        fresh.fit(train_flows)
        elapsed = time.perf_counter() - t0
    history = getattr(fresh, "history_", {}) or {}
    n_epochs = len(history.get("train_loss", [])) or int(epochs)
    return elapsed / n_epochs, mem.peak_rss_mb, mem.peak_mb


def precision_label(generator) -> str:
    """The efficiency table's precision: ``"fp32"`` or ``"int8 <mode>"`` weights, plus the sampling
    autocast where it is not fp32 (NetDiffus's ``sample_precision``), e.g. ``"fp32, bf16 sampling"``."""
    quant = getattr(generator, "quantization_", None)
    label = f"int8 {quant['mode']}" if quant else "fp32"
    sampling = getattr(generator, "sample_precision", "fp32")
    return label if sampling == "fp32" else f"{label}, {sampling} sampling"


def profile_generator(generator, *, name: str | None = None, train_flows=None, path: str | Path | None = None,
                      batch_sizes: Sequence[int] = (1, 1000), repeats: int = 3, epochs: int = 1,
                      random_state: int = 0) -> dict:
    """One efficiency row (see the module docstring). ``path``: the saved directory (its size is
    reported); ``None`` saves to a temporary folder to measure it."""
    quant = getattr(generator, "quantization_", None)
    row = {"model": name or generator.name, "generator": generator.name, "precision": precision_label(generator),
           "parameters": count_parameters(generator)}
    if path is not None:
        row["disk_mb"] = directory_size(path) / MB
    else:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "model"
            generator.save_pretrained(target)
            row["disk_mb"] = directory_size(target) / MB
    row["train_s_per_epoch"], row["train_peak_rss_mb"], row["train_peak_mb"] = None, None, None
    if train_flows is not None and not quant:
        (row["train_s_per_epoch"], row["train_peak_rss_mb"],
         row["train_peak_mb"]) = training_time(generator, train_flows, epochs=epochs)
    peak = peak_rss = 0.0
    for b in batch_sizes:
        with PeakMemory(device=_device(generator)) as mem:
            row[f"gen_ms_per_sample_b{int(b)}"] = generation_latency(generator, int(b), repeats=repeats,
                                                                     random_state=random_state)
        peak, peak_rss = max(peak, mem.peak_mb), max(peak_rss, mem.peak_rss_mb)
    row["gen_peak_rss_mb"], row["gen_peak_mb"] = peak_rss, peak
    row["device"] = _device(generator)
    return row


def profile_model_dir(path: str | Path, **kwargs) -> dict:
    """:func:`profile_generator` of a saved (fp32 or quantized) model directory."""
    from trafficgen.registry import load_generator

    kwargs.setdefault("name", Path(path).name)
    return profile_generator(load_generator(path), path=path, **kwargs)


_COLUMNS = [("model", "model", "{}"), ("precision", "precision", "{}"), ("parameters", "params", "{:,}"),
            ("disk_mb", "disk (MB)", "{:.2f}"), ("train_s_per_epoch", "train (s/epoch)", "{:.2f}"),
            ("train_peak_rss_mb", "train peak RSS (MB)", "{:.0f}"), ("train_peak_mb", "train +MB", "{:.0f}"),
            ("gen_peak_rss_mb", "gen peak RSS (MB)", "{:.0f}"), ("gen_peak_mb", "gen +MB", "{:.0f}")]


def efficiency_table_markdown(rows: Sequence[dict]) -> str:
    """Markdown table, one row per model; latency columns for every ``gen_ms_per_sample_b*`` key."""
    lat = sorted({k for r in rows for k in r if k.startswith("gen_ms_per_sample_b")},
                 key=lambda k: int(k.rsplit("b", 1)[1]))
    cols = _COLUMNS[:5] + [(k, f"gen ms/sample @{k.rsplit('b', 1)[1]}", "{:.3f}") for k in lat] + _COLUMNS[5:]
    extra = [k for k in ("fidelity_delta", "tstr_delta") if any(k in r for r in rows)]
    cols += [(k, k.replace("_", " "), "{:+.4f}") for k in extra]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = ["—" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_efficiency(rows: Sequence[dict], out_dir: str | Path) -> dict[str, Path]:
    """``efficiency.json`` + ``efficiency.md`` in ``out_dir`` (each written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "efficiency.json", "markdown": out_dir / "efficiency.md"}
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(list(rows), indent=2))
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(efficiency_table_markdown(rows))
    return paths
