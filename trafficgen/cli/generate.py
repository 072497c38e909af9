"""`trafficgen train` (any registered generator), `trafficgen sample`, `trafficgen classes`."""
from __future__ import annotations

from pathlib import Path

import typer

from trafficgen.cli.data_parallel import check_num_processes, launched_here, option_given


def match_class(name: str, known) -> str:
    """The library's class-name rule (:func:`trafficgen.generators.base.match_class`): ``name``
    itself if known, else the unique case-insensitive match (``youtube`` -> ``YouTube``)."""
    from trafficgen.generators.base import match_class as library_rule

    return library_rule(name, known)


FLOW_SUFFIXES = (".parquet", ".jsonl", ".csv")


def check_flows_output(out: Path | None) -> None:
    """Before any work: ``-o`` ends in a flow format and can be written."""
    from trafficgen._io import check_output_path
    from trafficgen.errors import ConfigError

    if out is None:
        return
    if out.suffix.lower() not in FLOW_SUFFIXES:
        raise ConfigError(f"output must end in .parquet, .jsonl or .csv, got {out.name!r}")
    check_output_path(out, "file")


def generator_kwargs(cls, **options) -> tuple[dict, list[str]]:
    """The options (None = not given) that ``cls.__init__`` accepts, and the names it ignores."""
    accepted = set(cls._param_names())
    given = {k: v for k, v in options.items() if v is not None}
    return {k: v for k, v in given.items() if k in accepted}, sorted(k for k in given if k not in accepted)


def flows_table(flows, title: str = "samples"):
    """A rich table: per class, flow count, mean packets, mean |payload|, share c->s, an example."""
    import numpy as np
    from rich.table import Table

    table = Table(title=title)
    for col in ("class", "flows", "mean packets", "mean |payload| B", "client->server", "example"):
        table.add_column(col, justify="left" if col in ("class", "example") else "right")
    labels = flows.labels if flows.labels is not None else np.array([""] * len(flows), dtype=object)
    for c in sorted(set(labels.tolist())):
        sub = flows[labels == c]
        x = sub.lengths[sub.valid_mask]
        ex = sub.sequences()[0][:8] if len(sub) else []
        table.add_row(c, str(len(sub)), f"{sub.n_packets.mean():.2f}",
                      f"{np.abs(x).mean():.0f}" if x.size else "-",
                      f"{(x > 0).mean():.2f}" if x.size else "-",
                      " ".join(f"{v:+d}" for v in ex) + (" ..." if len(sub) and sub.n_packets[0] > 8 else ""))
    return table


def loss_figure(history: dict, title: str = "training loss"):
    """The figure of loss.png: train / validation loss per epoch, integer epoch ticks, the best
    epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(history["train_loss"]) + 1), history["train_loss"], marker=".", label="train")
    if history.get("val_loss"):
        ax.plot(range(1, len(history["val_loss"]) + 1), history["val_loss"], marker=".", label="validation")
    best = history.get("best_epoch", -1)
    if best is not None and best >= 0:
        ax.axvline(best + 1, color="grey", linestyle=":", linewidth=1, label=f"best (epoch {best + 1})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def _plot_losses(history: dict, file: Path, title: str = "training loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trafficgen._io import atomic_path

    fig = loss_figure(history, title)
    with atomic_path(file) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @app.command("train")
    def train(
        ctx: typer.Context,
        model: str = typer.Option("llama", "--model", "-m", help="Generator: llama, mamba, netdiffus, cvae, ..."),
        data: Path | None = typer.Option(None, "--data", help="FlowSet file (.parquet/.jsonl/.csv); "
                                         "default: the shipped nDPI app flows."),
        out: Path = typer.Option(..., "-o", "--out", help="Output model directory."),
        epochs: int | None = typer.Option(None, "--epochs", help="Training epochs."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Mini-batch size."),
        preset: str | None = typer.Option(None, "--preset", help="Size preset (tiny, small, base)."),
        seed: int | None = typer.Option(0, "--seed", help="Random seed."),
        packets: int | None = typer.Option(None, "--packets", help="Model the first N packets of each flow."),
        class_balance: float | None = typer.Option(None, "--class-balance", help="LLaMA / Mamba: draw a class's "
                                                   "flows with weight count^-b (0 natural, 1 all classes equally)."),
        repeat_weight: float | None = typer.Option(None, "--repeat-weight", help="LLaMA / Mamba: a flow repeated m "
                                                   "times counts m^r times (1 unchanged, 0 deduplicated)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
        precision: str | None = typer.Option(None, "--precision", help="Training precision: fp32 (default), "
                                             "bf16 (CUDA, MPS, CPUs with AVX512-BF16/AMX) or fp16 (CUDA)."),
        grad_accum: int | None = typer.Option(None, "--gradient-accumulation-steps", help="Batches per "
                                              "optimiser step."),
        num_processes: int = typer.Option(1, "--num-processes", help="Data-parallel training in N processes "
                                          "(accelerate's launcher; gloo on the CPU, one GPU each with CUDA)."),
        timing: bool | None = typer.Option(None, "--timing/--no-timing", help="Also learn inter-arrival times "
                                           "(LLaMA / Mamba: off by default; markov: on when the flows carry "
                                           "IATs); `sample` then writes them."),
    ) -> None:
        """Train a generator on labelled flows and save it (config.json + model.safetensors).

        Data-parallel: ``--num-processes N``, or ``accelerate launch --multi_gpu --num_processes N
        -m trafficgen train ...``; only the main process writes the model."""
        import json

        from trafficgen._device import resolve_device, resolve_precision
        from trafficgen._io import check_output_path
        from trafficgen.data.flowset import FlowSet
        from trafficgen.generators.training import is_main_process
        from trafficgen.registry import get_generator

        check_output_path(out, "dir")  # before minutes of training
        resolve_precision(precision or "fp32", resolve_device(device, option="--device"), option="--precision")
        check_num_processes(num_processes)
        if launched_here(ctx, num_processes, device):
            return
        cls = get_generator(model)
        kwargs, ignored = generator_kwargs(cls, epochs=epochs, batch_size=batch_size, preset=preset,
                                           random_state=seed, max_packets=packets, class_balance=class_balance,
                                           repeat_weight=repeat_weight, progress=True, device=device,
                                           precision=precision, gradient_accumulation_steps=grad_accum,
                                           timing=timing)
        option = {"random_state": "seed", "max_packets": "packets", "gradient_accumulation_steps": "grad_accum"}
        for name in ignored:  # only what the user asked for: --seed has a default every model gets
            if name not in ("progress", "device") and option_given(ctx, option.get(name, name)) and is_main_process():
                typer.echo(f"warning: {cls.__name__} has no parameter {name!r}; ignored", err=True)
        if data is None:
            from trafficgen.datasets import load_ndpi_apps

            flows = load_ndpi_apps(progress=True)
        else:
            flows = FlowSet.read(data)
        gen = cls(**kwargs).fit(flows)
        if not is_main_process():
            return  # data-parallel: the other processes hold the same weights; only the main one writes
        gen.save_pretrained(out)
        history = getattr(gen, "history_", None)
        if isinstance(history, dict) and history.get("train_loss"):
            _plot_losses(history, out / "loss.png", title=f"{model}: training loss ({len(flows)} flows)")
            last = history["val_loss"][-1] if history.get("val_loss") else history["train_loss"][-1]
            typer.echo(f"final loss {last:.4f} (best epoch {history.get('best_epoch', -1) + 1})")
        typer.echo(json.dumps({"model": model, "out": str(out), "flows": len(flows),
                               "classes": len(gen.classes_)}))

    @app.command("sample")
    def sample(
        cls: str | None = typer.Option(None, "--class", "-c", help="Class to generate (case-insensitive); "
                                       "default: the training class mix."),
        n: int = typer.Option(1000, "-n", help="Number of flows."),
        model: Path | None = typer.Option(None, "--model", help="Saved model directory; default: the cached "
                                          "default LLaMA (trained on first use)."),
        out: Path | None = typer.Option(None, "-o", "--out", help="Write flows (.parquet/.jsonl/.csv); "
                                        "without it, print a summary."),
        seed: int | None = typer.Option(0, "--seed", help="Random seed."),
        temperature: float | None = typer.Option(None, "--temperature", help="Softmax temperature (0 = greedy)."),
        top_k: int | None = typer.Option(None, "--top-k", help="Sample from the k most likely tokens."),
        top_p: float | None = typer.Option(None, "--top-p", help="Nucleus sampling mass."),
        dtype: str | None = typer.Option(None, "--dtype", help="Decode precision of the LLaMA / Mamba "
                                         "generators and NetDiffus's U-Net: float32 (default) or bfloat16 "
                                         "(faster on CPUs with AMX / AVX512-BF16)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
    ) -> None:
        """Generate synthetic flows, optionally of one class."""
        import inspect

        from rich.console import Console

        from trafficgen._device import resolve_device
        from trafficgen.errors import ConfigError

        if n < 1:
            raise ConfigError(f"-n must be >= 1, got {n}")
        resolve_device(device, option="--device")
        check_flows_output(out)  # before loading, training or sampling anything
        gen, chosen = _load_model(model, cls)
        place_on_device(gen, device)
        accepted = inspect.signature(gen.sample).parameters
        extra = {k: v for k, v in dict(temperature=temperature, top_k=top_k, top_p=top_p, dtype=dtype).items()
                 if v is not None}
        for k in list(extra):
            if k not in accepted:
                typer.echo(f"warning: {type(gen).__name__}.sample has no option {k!r}; ignored", err=True)
                extra.pop(k)
        if "progress" in accepted:
            extra["progress"] = True
        flows = gen.sample(n, cls=chosen, random_state=seed, **extra)
        if out is None:
            Console().print(flows_table(flows, title=f"{len(flows)} synthetic flows"))
        else:
            flows.save(out)
            typer.echo(f"wrote {out}: {len(flows)} flows")

    @app.command("classes")
    def classes(
        model: Path | None = typer.Option(None, "--model", help="Saved model directory; default: the "
                                          "cached default LLaMA."),
    ) -> None:
        """List the classes a model can generate, with their training flow counts."""
        gen, _ = _load_model(model)
        counts = getattr(gen, "class_counts_", None) or {}
        for c in gen.classes_:
            typer.echo(f"{c}\t{counts[c]}" if c in counts else c)


def _load_model(model: Path | None, cls: str | None = None):
    """(generator, the canonical name of class ``cls`` or None). The class is checked before the
    default model is trained (against its training flows' classes)."""
    if model is None:
        from trafficgen.datasets import load_ndpi_apps
        from trafficgen.pretrained.default_model import get_default_model

        flows = load_ndpi_apps(progress=True)
        chosen = None if cls is None else match_class(cls, flows.classes)
        return get_default_model(progress=True, flows=flows), chosen
    from trafficgen.registry import load_generator

    gen = load_generator(model)
    return gen, None if cls is None else match_class(cls, gen.classes_)


def place_on_device(model, device: str) -> None:
    """Set a loaded torch model's ``device`` (models without one run where they run)."""
    if "device" in type(model)._param_names():
        model.set_params(device=device)
