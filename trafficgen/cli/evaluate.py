"""`trafficgen fidelity` (one synthetic set vs real flows) and `trafficgen evaluate` (fidelity,
TSTR and low-data augmentation for saved models)."""
from __future__ import annotations

from pathlib import Path

import typer


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").exists()


def _unique_names(paths: list[Path], reserved: set[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = p.resolve().name or "model"
        name, k = base, 2
        while name in names or name in reserved:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _print_reports(reports) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fidelity / privacy (macro over classes)")
    table.add_column("metric")
    table.add_column("better")
    for r in reports:
        table.add_column(r.name, justify="right")
    from trafficgen.evaluation.report import _cell

    for n, m in reports[0].metrics.items():
        table.add_row(n, m["direction"], *[_cell(r.metrics[n]["value"]) if n in r.metrics else "n/a"
                                           for r in reports])
    Console().print(table)


def _print_per_class(report) -> None:
    """Per compared class: real and synthetic flow counts (few real flows flagged) and each metric."""
    from rich.console import Console
    from rich.table import Table

    from trafficgen.evaluation.report import MIN_REAL_FLOWS

    counts = report.info.get("class_counts", {})
    few = set(report.info.get("few_real_flows", []))
    names = list(report.metrics)
    table = Table(title=f"per class (* fewer than {MIN_REAL_FLOWS} real flows: unstable)")
    for col in ("class", "real", "synthetic", *(n.removesuffix("_jsd") for n in names)):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in next(iter(report.metrics.values()))["per_class"]:
        n = counts.get(c, {})
        table.add_row(c + (" *" if c in few else ""), str(n.get("real", "-")), str(n.get("synthetic", "-")),
                      *[f"{report.metrics[m]['per_class'][c]:.4f}" for m in names])
    Console().print(table)


def _sample_like_with_progress(gen, real_flows, seed: int):
    """``sample_like`` (one synthetic flow per real flow of a class the model knows), with the
    generator's own progress where it has one, else a start and an end line."""
    import inspect

    from trafficgen._progress import ProgressReporter

    known = set(gen.classes_)
    labels = [c for c in real_flows.labels.tolist() if c in known]
    missing = sorted(set(real_flows.labels.tolist()) - known)
    if not labels:
        from trafficgen.data.flowset import FlowSet

        return FlowSet.from_sequences([], labels=[], max_packets=real_flows.max_packets), missing
    if "progress" in inspect.signature(gen.sample).parameters:
        return gen.sample(len(labels), cls=labels, random_state=seed, progress=True), missing
    with ProgressReporter(len(labels), f"sample {type(gen).name}", unit="flows") as update:
        syn = gen.sample(len(labels), cls=labels, random_state=seed)
        update(len(labels))
    return syn, missing


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @app.command("fidelity")
    def fidelity(
        real: Path = typer.Option(..., "--real", help="Real flows (.parquet, .jsonl, .csv)."),
        synthetic: Path | None = typer.Option(None, "--synthetic",
                                              help="Synthetic flows file, or a saved model directory."),
        model: Path | None = typer.Option(None, "--model", help="Saved model directory (instead of --synthetic)."),
        train: Path | None = typer.Option(None, "--train", help="The generator's real training flows "
                                          "(reference for leakage; default: --real)."),
        out: Path = typer.Option(Path("report"), "-o", "--out", help="Output folder."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed when a model directory is given."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
    ) -> None:
        """JSD fidelity (packet count, 1-gram, 2-gram, Markov) and privacy (UniqAlign, Leakage),
        per class and macro-averaged over the classes both sides have (the others are named, not
        scored). Writes report.json, report.md and radar.png."""
        from trafficgen._device import resolve_device
        from trafficgen._io import atomic_path, check_output_path
        from trafficgen.cli.generate import place_on_device
        from trafficgen.data.flowset import FlowSet
        from trafficgen.errors import ConfigError
        from trafficgen.evaluation.plots import radar_plot
        from trafficgen.evaluation.report import FidelityReport

        if (synthetic is None) == (model is None):
            raise ConfigError("give exactly one of --synthetic and --model")
        resolve_device(device, option="--device")
        check_output_path(out, "dir")
        source = synthetic if synthetic is not None else model
        if not _is_model_dir(source) and source.is_dir():
            raise ConfigError(f"{source}: not a saved model directory (no config.json)")
        real_flows = FlowSet.read(real)
        if real_flows.labels is None:
            raise ConfigError(f"{real}: the real flows must be labelled")
        info = {"real": str(real), "synthetic": str(source)}
        if _is_model_dir(source):
            from trafficgen.registry import load_generator

            gen = load_generator(source)
            place_on_device(gen, device)
            syn, missing = _sample_like_with_progress(gen, real_flows, seed)
            info.update(sampled=True, seed=seed, unknown_classes=missing)
        else:
            syn = FlowSet.read(source)
        ref = FlowSet.read(train) if train is not None else None
        report = FidelityReport.compute(real_flows, syn, name=source.name, train=ref, info=info)
        for line in report.warnings():
            typer.echo(f"warning: {line}", err=True)
        _print_reports([report])
        _print_per_class(report)
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / "report.json")
        with atomic_path(out / "report.md") as tmp:
            Path(tmp).write_text("# trafficgen fidelity\n\n" + report.to_markdown() + "\n\n![radar](radar.png)\n")
        radar_plot({report.name: report.scores()}, out / "radar.png")
        typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'radar.png'}")

    @app.command("evaluate")
    def evaluate(
        model: list[Path] = typer.Option([], "--model", help="Saved model directory (repeatable; none: "
                                         "only the SMOTE / Fast Retransmit baselines)."),
        real: Path | None = typer.Option(None, "--real", help="Labelled real flows; default: the shipped "
                                         "nDPI apps (trafficgen.datasets.load_ndpi_apps)."),
        test_size: float = typer.Option(0.3, "--test-size", help="Held-out real fraction (stratified)."),
        split_seed: int = typer.Option(0, "--split-seed", help="Seed of the train/test split."),
        seeds: int = typer.Option(3, "--seeds", help="Classifier / subsampling seeds (mean +- std)."),
        draws: int = typer.Option(1, "--draws", help="Synthetic sets drawn per generator; sample-based "
                                  "numbers are their mean (+- their spread)."),
        fractions: str = typer.Option("0.01,0.05,0.1,0.25,0.5,1.0", "--fractions",
                                      help="Comma-separated fractions of real training data kept."),
        n_estimators: int = typer.Option(100, "--n-estimators", help="Random-forest trees."),
        baselines: bool = typer.Option(True, "--baselines/--no-baselines",
                                       help="Also evaluate SMOTE and Fast Retransmit fitted on the training part."),
        out: Path = typer.Option(Path("report"), "-o", "--out", help="Output folder."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
    ) -> None:
        """Fidelity (vs held-out real), TSTR (+ train-on-real bound) and low-data augmentation
        (none / SMOTE / Fast Retransmit / each model). Writes report.json, report.md and PNGs."""
        from trafficgen._io import check_output_path
        from trafficgen.data.flowset import FlowSet
        from trafficgen.errors import ConfigError
        from trafficgen.evaluation.report import FidelityReport, write_evaluation
        from trafficgen.experiments.run_evaluation import run_evaluation
        from trafficgen.registry import load_generator

        try:
            fr = [float(x) for x in fractions.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--fractions must be comma-separated numbers, got {fractions!r}") from None
        if not 0.0 < test_size < 1.0:
            raise ConfigError(f"--test-size must lie in (0, 1), got {test_size}")
        if not model and not baselines:
            raise ConfigError("nothing to evaluate: give --model or keep --baselines")
        from trafficgen._device import resolve_device
        from trafficgen.cli.generate import place_on_device

        resolve_device(device, option="--device")
        check_output_path(out, "dir")
        names = _unique_names(model, {"smote", "fast_retransmit", "none", "train_on_real"})
        gens = {}
        for name, path in zip(names, model, strict=True):  # a bad folder fails before the data is read
            gens[name] = load_generator(path)
            place_on_device(gens[name], device)
        if real is None:
            from trafficgen.datasets import load_ndpi_apps

            flows = load_ndpi_apps(progress=True)
        else:
            flows = FlowSet.read(real)
        results = run_evaluation(flows, gens, test_size=test_size, split_seed=split_seed, seeds=seeds,
                                 fractions=fr, n_estimators=n_estimators, baselines=baselines, draws=draws,
                                 progress=True)
        results["models"] = {n: str(p) for n, p in zip(names, model, strict=True)}
        results["real"] = str(real) if real is not None else "trafficgen.datasets.load_ndpi_apps()"
        files = write_evaluation(results, out)
        reports = [FidelityReport.from_dict(d) for d in results["fidelity"]]
        if reports:
            _print_reports(reports)
        t = results["tstr"]
        typer.echo("TSTR macro F1: " + ", ".join(f"{k} {v['macro_f1_mean']:.3f}" for k, v in t.items()))
        typer.echo("wrote " + ", ".join(str(p) for p in files.values()))
