"""`trafficgen train` (any registered generator), `trafficgen sample`, `trafficgen classes`."""
from __future__ import annotations

from pathlib import Path

import typer


def match_class(name: str, known) -> str:
    """``name`` itself if known, else the unique case-insensitive match (``youtube`` -> ``YouTube``);
    otherwise :class:`UnknownClassError` listing the known classes."""
    from trafficgen.errors import ConfigError, UnknownClassError

    known = list(known)
    if name in known:
        return name
    hits = [k for k in known if k.lower() == name.lower()]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ConfigError(f"class {name!r} is ambiguous: {', '.join(hits)} (use the exact name)")
    raise UnknownClassError(name, known)


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


def _plot_losses(history: dict, file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trafficgen._io import atomic_path

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(history["train_loss"]) + 1), history["train_loss"], label="train")
    if history.get("val_loss"):
        ax.plot(range(1, len(history["val_loss"]) + 1), history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats / token)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(file) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @app.command("train")
    def train(
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
    ) -> None:
        """Train a generator on labelled flows and save it (config.json + model.safetensors)."""
        import json

        from trafficgen.data.flowset import FlowSet
        from trafficgen.registry import get_generator

        cls = get_generator(model)
        if data is None:
            from trafficgen.datasets import load_ndpi_apps

            flows = load_ndpi_apps(progress=True)
        else:
            flows = FlowSet.read(data)
        kwargs, ignored = generator_kwargs(cls, epochs=epochs, batch_size=batch_size, preset=preset,
                                           random_state=seed, max_packets=packets, class_balance=class_balance,
                                           repeat_weight=repeat_weight, progress=True)
        for name in ignored:
            if name != "progress":
                typer.echo(f"warning: {cls.__name__} has no parameter {name!r}; ignored", err=True)
        gen = cls(**kwargs).fit(flows)
        gen.save_pretrained(out)
        history = getattr(gen, "history_", None)
        if isinstance(history, dict) and history.get("train_loss"):
            _plot_losses(history, out / "loss.png")
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
                                         "generators: float32 (default) or bfloat16 (faster on CPUs with "
                                         "AMX / AVX512-BF16)."),
    ) -> None:
        """Generate synthetic flows, optionally of one class."""
        import inspect

        from rich.console import Console

        from trafficgen.errors import ConfigError

        if out is not None and out.suffix.lower() not in (".parquet", ".jsonl", ".csv"):
            raise ConfigError(f"output must end in .parquet, .jsonl or .csv, got {out.name!r}")
        gen = _load_model(model)
        chosen = None if cls is None else match_class(cls, gen.classes_)
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
        gen = _load_model(model)
        counts = getattr(gen, "class_counts_", None) or {}
        for c in gen.classes_:
            typer.echo(f"{c}\t{counts[c]}" if c in counts else c)


def _load_model(model: Path | None):
    if model is None:
        from trafficgen.pretrained.default_model import get_default_model

        return get_default_model(progress=True)
    from trafficgen.registry import load_generator

    return load_generator(model)
