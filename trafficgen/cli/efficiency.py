"""`trafficgen profile` and `trafficgen quantize`: efficiency table and int8 post-training quantization."""
from __future__ import annotations

from pathlib import Path

import typer

SHIPPED = {"ndpi": "load_ndpi_apps", "cicdoh20": "load_cicdoh20"}


def _read_flows(data: str):
    if data in SHIPPED:
        import trafficgen.datasets as ds

        return getattr(ds, SHIPPED[data])()
    from trafficgen.data.flowset import FlowSet

    return FlowSet.read(data)


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @app.command()
    def profile(
        model: list[Path] = typer.Option(..., "--model", "-m", help="Saved model directory (repeatable)."),
        data: str | None = typer.Option(None, "--data", "-d",
                                           help="Flows to time training on: a file, or 'ndpi' / 'cicdoh20'."),
        epochs: int = typer.Option(1, help="Training epochs to time (per-epoch time is reported)."),
        batch_sizes: str = typer.Option("1,1000", help="Comma-separated generation batch sizes."),
        repeats: int = typer.Option(3, help="Timed generation runs per batch size (median)."),
        max_flows: int | None = typer.Option(None, help="Use only the first N flows of --data."),
        out: Path = typer.Option(Path("profile"), "--out", "-o", help="Output folder (efficiency.json/.md)."),
    ):
        """Parameters, disk size, training s/epoch, peak memory and generation ms/sample of saved models."""
        from rich.console import Console

        from trafficgen._io import check_output_path
        from trafficgen._progress import ProgressReporter
        from trafficgen.experiments.profiling import (
            efficiency_table_markdown,
            profile_model_dir,
            write_efficiency,
        )

        check_output_path(out, "dir")
        flows = None
        if data is not None:
            flows = _read_flows(data)
            if max_flows is not None:
                flows = flows[: int(max_flows)]
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
        rows = []
        with ProgressReporter(len(model), "profile", unit="models") as update:
            for m in model:
                rows.append(profile_model_dir(m, train_flows=flows, batch_sizes=sizes, repeats=repeats, epochs=epochs))
                update(1, last=m.name)
        paths = write_efficiency(rows, out)
        Console().print(efficiency_table_markdown(rows), markup=False)
        typer.echo(f"wrote {paths['json']} and {paths['markdown']}")

    @app.command()
    def quantize(
        model: Path = typer.Option(..., "--model", "-m", help="Saved fp32 model directory."),
        mode: str = typer.Option("weight-only", "--mode", help="'weight-only' or 'dynamic' int8."),
        out: Path = typer.Option(..., "--out", "-o", help="Output model directory."),
    ):
        """Post-training int8 quantization of a saved neural generator (Linear/Embedding layers)."""
        from trafficgen._io import check_output_path
        from trafficgen._progress import ProgressReporter
        from trafficgen.experiments.profiling import directory_size
        from trafficgen.generators.quantization import quantize_generator
        from trafficgen.registry import load_generator

        check_output_path(out, "dir")
        gen = load_generator(model)
        with ProgressReporter(2, f"quantize ({mode}): quantize, save", unit="stages") as update:
            q = quantize_generator(gen, mode=mode)
            update(1)
            q.save_pretrained(out)
            update(1)
        info = q.quantization_
        before, after = directory_size(model), directory_size(out)
        typer.echo(f"{len(info['linear'])} linear + {len(info['embedding'])} embedding layers -> int8 ({mode}); "
                   f"{len(info['fp32_kept'])} conv layers kept fp32")
        typer.echo(f"size {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB ({after / before:.1%}); wrote {out}")
