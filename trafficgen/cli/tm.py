"""`trafficgen tm train`, `tm forecast`, `tm evaluate`: traffic-matrix forecasting.

Thin wrappers over :mod:`trafficgen.generators.tm` (model names, loading) and
:mod:`trafficgen.evaluation.tm.forecast_report` (protocol, tables, plots).
"""
from __future__ import annotations

from pathlib import Path

import typer

_DATA_HELP = "'abilene', 'geant', or a TM file/folder (.npy, .csv, .hist, .txt, SNDLib/TOTEM .xml)."
_SPLIT = (0.7, 0.15, 0.15)
_SAMPLES_HELP = ("Draw K samples per forecast (quantiles, CRPS, coverage, beside probabilistic persistence); "
                 "for LEAD the point forecast is their median (default: the model's own K, 16, for "
                 "probabilistic models; none for the others).")
_STEPS_HELP = "Sampling steps of a diffusion forecaster (LEAD; default: the model's own, 10 DPM-Solver++ steps)."
_MAX_ORIGINS_HELP = ("Score at most M test origins, evenly spaced (default: every origin; 200 for LEAD; "
                     "0 = every origin).")


def _parse_ints(text: str, what: str) -> list[int]:
    from trafficgen.errors import ConfigError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what} must name at least one integer")
    return values


def load_series(data: str):
    """'abilene' / 'geant' (shipped) or any TM file readable by :func:`trafficgen.data.tm.read_tm`."""
    if data.lower() == "abilene":
        from trafficgen.datasets import load_abilene

        return load_abilene()
    if data.lower() == "geant":
        from trafficgen.datasets import load_geant

        return load_geant()
    import warnings

    from trafficgen.data.tm import read_tm

    with warnings.catch_warnings(record=True) as caught:  # the reader's warnings as one line each
        warnings.simplefilter("always")
        series = read_tm(Path(data))
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    return series


def build_model(name: str, *, epochs: int | None = None, seed: int | None = None, t_in: int | None = None,
                horizons: list[int] | None = None, llm: str | None = None, ablations: list[str] | None = None,
                allow_download: bool = False, device: str | None = None,
                gradient_accumulation_steps: int | None = None):
    """Instantiate ``name`` with the options its ``__init__`` accepts (``llm`` / ``ablations`` /
    ``allow_download`` / ``gradient_accumulation_steps`` only where the model takes them; asking
    for them elsewhere is an error; ``device`` where the model takes one)."""
    from trafficgen.errors import ConfigError
    from trafficgen.generators.tm import get_tm_model

    cls = get_tm_model(name)
    accepted = set(cls._param_names())
    wanted = {"epochs": epochs, "random_state": seed, "t_in": t_in,
              "horizons": tuple(horizons) if horizons else None, "llm": llm,
              "ablations": tuple(ablations) if ablations else None, "allow_download": allow_download or None,
              "progress": True, "device": device,  # a command shows its progress (models that report any)
              "gradient_accumulation_steps": gradient_accumulation_steps}
    for key in ("llm", "ablations", "allow_download", "gradient_accumulation_steps"):
        if wanted[key] is not None and key not in accepted:
            raise ConfigError(f"model {name!r} takes no {key.replace('_', '-')!r} option")
    return cls(**{k: v for k, v in wanted.items() if v is not None and k in accepted})


def _apply_sampling_options(forecaster, *, steps: int | None, samples: int | None) -> None:
    """``--steps`` -> the model's sampling steps; ``--samples`` -> the samples its point forecast is
    the median of (models that sample; ``--steps`` elsewhere is an error)."""
    from trafficgen.errors import ConfigError

    if steps is not None:
        if not hasattr(forecaster, "n_inference_steps"):
            raise ConfigError(f"model {forecaster.name!r} has no diffusion sampler; --steps is for lead")
        if steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {steps}")
        forecaster.n_inference_steps = int(steps)
    if samples is not None:
        if samples < 1:
            raise ConfigError(f"--samples must be >= 1, got {samples}")
        if hasattr(forecaster, "n_samples"):
            forecaster.n_samples = int(samples)


def _resolve(model: str, **build_kw):
    """(forecaster, fitted?) from a saved directory or a registry name."""
    from trafficgen.generators.tm import load_tm_model

    if Path(model).is_dir():
        forecaster = load_tm_model(model)
        device = build_kw.get("device")
        if device is not None and "device" in forecaster._param_names():
            forecaster.set_params(device=device)
        return forecaster, True
    return build_model(model, **build_kw), False


def check_device(device: str | None) -> None:
    """``--device`` checked before any work (one line when this machine lacks it)."""
    from trafficgen._device import resolve_device

    if device is not None:
        resolve_device(device, option="--device")


def _evaluate(model: str, data: str, out: Path, *, horizons: str | None, t_in: int, samples: int | None,
              seed: int, epochs: int | None, write_npz: bool, fan_od: str | None = None,
              fan_horizon: int | None = None, steps: int | None = None, max_origins: int | None = None,
              device: str | None = None) -> dict:
    import numpy as np

    from trafficgen._io import atomic_path
    from trafficgen.errors import ConfigError
    from trafficgen.evaluation.tm.fan_chart import fan_chart, largest_od_pairs, parse_od_pairs
    from trafficgen.evaluation.tm.forecast_report import write_results
    from trafficgen.experiments.tm_forecast import evaluate_forecaster
    from trafficgen.generators.tm import UNTRAINED

    check_device(device)
    if (fan_od or fan_horizon) and not samples:
        raise ConfigError("--fan-od / --fan-horizon need --samples K (the fan chart shows sample intervals)")
    if max_origins is not None and max_origins < 0:
        raise ConfigError(f"--max-origins must be >= 0 (0 = every test origin), got {max_origins}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is an existing file")
    series = load_series(data)
    pairs = parse_od_pairs(fan_od, series.nodes) if fan_od else None
    hs = _parse_ints(horizons, "--horizons") if horizons else None
    forecaster, fitted = _resolve(model, epochs=epochs, seed=seed, t_in=t_in, horizons=hs, device=device)
    if "progress" in forecaster._param_names():  # a saved model may have been made quiet (recipes)
        forecaster.progress = True
    _apply_sampling_options(forecaster, steps=steps, samples=samples)
    if samples is None and getattr(forecaster, "probabilistic", False):
        samples = int(getattr(forecaster, "n_samples", 16))  # a probabilistic model is scored as one
    if max_origins is None:
        max_origins = forecaster.default_max_origins
    max_origins = max_origins or None  # 0: every test origin
    if not fitted and forecaster.name not in UNTRAINED:
        typer.echo(f"note: {forecaster.name} is not trained; fitting it on the train split now "
                   "(use `trafficgen tm train` to keep the model)", err=True)
    if hs is None:
        hs = [int(h) for h in getattr(forecaster, "horizons", (1, 10, 20))]
    if fan_horizon is not None and fan_horizon not in hs:
        raise ConfigError(f"--fan-horizon {fan_horizon} is not one of the horizons {hs}")
    results = evaluate_forecaster(forecaster, series, horizons=hs, t_in=t_in, split=_SPLIT,
                                  n_samples=samples, fit=not fitted, random_state=seed, max_origins=max_origins)
    if hasattr(forecaster, "n_inference_steps"):
        results["n_inference_steps"] = int(forecaster.n_inference_steps)
    baselines = []
    if results["model"] != "persistence":
        baselines.append(evaluate_forecaster(build_model("persistence"), series, horizons=hs, t_in=t_in,
                                             split=_SPLIT, max_origins=max_origins))
    if samples and results["model"] != "persistence-prob":  # the probabilistic bar, same origins and K
        baselines.append(evaluate_forecaster(build_model("persistence-prob", horizons=hs), series, horizons=hs,
                                             t_in=t_in, split=_SPLIT, n_samples=samples, random_state=seed,
                                             max_origins=max_origins))
    paths = write_results(results, out, baseline_results=baselines or None)
    if samples and write_npz:
        h0 = hs[0] if fan_horizon is None else int(fan_horizon)
        fc = results["forecast"]
        paths["fan_chart"] = fan_chart(
            series.values, fc["origins"], fc["samples"], pairs or largest_od_pairs(series.values),
            horizon_index=hs.index(h0), horizon=h0, path=out / "fan_chart.png", unit=series.unit,
            interval_s=series.interval_s, nodes=list(series.nodes),
            title=f"{results['model']}, horizon {h0}: median and 50/90 % intervals of {samples} samples")
    if write_npz:
        fc = results["forecast"]
        arrays = {"origins": fc["origins"], "horizons": fc["horizons"], "point": fc["point"],
                  "y_true": fc["y_true"], "unit": np.array(series.unit),
                  "interval_s": np.array(series.interval_s)}
        if "samples" in fc:
            levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
            arrays["samples"] = fc["samples"]
            arrays["quantile_levels"] = levels
            arrays["quantiles"] = np.quantile(fc["samples"], levels, axis=1)  # (Q, B, H, N, N)
        paths["forecasts"] = out / "forecasts.npz"
        with atomic_path(paths["forecasts"]) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    typer.echo(Path(paths["table"]).read_text(), nl=False)
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    return results


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @tm_app.command("train")
    def train(
        ctx: typer.Context,
        model: str = typer.Option(..., "--model", "-m", help="Model name (persistence, seasonal, "
                                  "historical-average, lstm, gru, vit-lstm, stgcn, lead, ...)."),
        data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
        out: Path = typer.Option(..., "-o", "--out", help="Output model directory."),
        epochs: int | None = typer.Option(None, "--epochs", help="Training epochs (model default if unset)."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        t_in: int = typer.Option(24, "--t-in", help="Input window length (matrices)."),
        horizons: str = typer.Option("1,10,20", "--horizons", help="Comma-separated forecast horizons."),
        llm: str | None = typer.Option(None, "--llm", help="LLM name or path (models that take one)."),
        ablation: list[str] | None = typer.Option(None, "--ablation", help="Ablation (repeatable; "
                                                     "models that take ablations)."),
        allow_download: bool = typer.Option(False, "--allow-download", help="Let LEAD fetch --llm from the "
                                            "Hugging Face hub (default: local folders and the cache only)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
        grad_accum: int | None = typer.Option(None, "--gradient-accumulation-steps", help="Batches per "
                                              "optimiser step (the models that train with the shared loop: "
                                              "lstm, gru, vit-lstm, stgcn, lead, ddpm-tme)."),
        num_processes: int = typer.Option(1, "--num-processes", help="Data-parallel training in N processes "
                                          "(accelerate's launcher; gloo on the CPU, one GPU each with CUDA; "
                                          "lstm, gru, vit-lstm, stgcn, lead, ddpm-tme)."),
    ) -> None:
        """Fit a forecaster on the chronological train split (val split for early stopping) and save it.

        Data-parallel: ``--num-processes N``, or ``accelerate launch --multi_gpu --num_processes N
        -m trafficgen tm train ...``; only the main process writes the model and train_summary.json."""
        import json

        from trafficgen._io import atomic_path
        from trafficgen.cli.data_parallel import check_num_processes, launched_here
        from trafficgen.data.windows import chronological_split
        from trafficgen.errors import ConfigError
        from trafficgen.generators.training import is_main_process

        check_device(device)
        check_num_processes(num_processes)
        if grad_accum is not None and grad_accum < 1:
            raise ConfigError(f"--gradient-accumulation-steps must be >= 1, got {grad_accum}")
        forecaster = build_model(model, epochs=epochs, seed=seed, t_in=t_in,
                                 horizons=_parse_ints(horizons, "--horizons"), llm=llm, ablations=ablation,
                                 allow_download=allow_download, device=device, gradient_accumulation_steps=grad_accum)
        if num_processes > 1 and "gradient_accumulation_steps" not in forecaster._param_names():
            raise ConfigError(f"model {model!r} does not train data-parallel; --num-processes is for the models "
                              "that train with the shared loop (lstm, gru, vit-lstm, stgcn, lead, ddpm-tme)")
        series = load_series(data)  # a bad --data fails here, before any process is started
        if launched_here(ctx, num_processes, device):
            return
        train_part, val_part, _ = chronological_split(series, _SPLIT)
        forecaster.fit(train_part, val=val_part)
        if not is_main_process():
            return  # data-parallel: the other processes hold the same weights; only the main one writes
        forecaster.save_pretrained(out)
        summary = {"model": model, "data": data, "n_train": len(train_part), "n_val": len(val_part),
                   "history": getattr(forecaster, "history_", None)}
        with atomic_path(out / "train_summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, default=str))
        typer.echo(f"wrote {out}")

    @tm_app.command("forecast")
    def forecast(
        model: str = typer.Option(..., "--model", "-m", help="Model name or a saved model directory."),
        data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
        horizons: str | None = typer.Option(None, "--horizons", help="Comma-separated horizons "
                                               "(default: the model's)."),
        samples: int | None = typer.Option(None, "--samples", help=_SAMPLES_HELP),
        steps: int | None = typer.Option(None, "--steps", help=_STEPS_HELP),
        max_origins: int | None = typer.Option(None, "--max-origins", help=_MAX_ORIGINS_HELP),
        t_in: int = typer.Option(24, "--t-in", help="Input window length (matrices)."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        epochs: int | None = typer.Option(None, "--epochs", help="Epochs when a learned model is "
                                             "fitted on the fly."),
        fan_od: str | None = typer.Option(None, "--fan-od", help="OD pairs of the fan chart, e.g. "
                                          "'ATLA-HSTN,0-3' (names or indices; default: the 3 largest)."),
        fan_horizon: int | None = typer.Option(None, "--fan-horizon", help="Horizon of the fan chart "
                                               "(default: the first)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
    ) -> None:
        """Forecast the test origins (all, or --max-origins evenly spaced): forecasts.npz +
        metrics.json + table.md + PNGs, beside persistence on the same origins.

        forecasts.npz holds origins, horizons, point (B, H, N, N), y_true, unit, interval_s and,
        with --samples, samples (B, S, H, N, N), quantile_levels and quantiles (Q, B, H, N, N);
        with --samples, fan_chart.png shows the median and 50/90 % intervals for chosen OD pairs.
        """
        _evaluate(model, data, out, horizons=horizons, t_in=t_in, samples=samples, seed=seed, epochs=epochs,
                  write_npz=True, fan_od=fan_od, fan_horizon=fan_horizon, steps=steps, max_origins=max_origins,
                  device=device)

    @tm_app.command("evaluate")
    def evaluate(
        model: str = typer.Option(..., "--model", "-m", help="Model name or a saved model directory."),
        data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
        horizons: str | None = typer.Option(None, "--horizons", help="Comma-separated horizons "
                                               "(default: the model's)."),
        samples: int | None = typer.Option(None, "--samples", help=_SAMPLES_HELP),
        steps: int | None = typer.Option(None, "--steps", help=_STEPS_HELP),
        max_origins: int | None = typer.Option(None, "--max-origins", help=_MAX_ORIGINS_HELP),
        t_in: int = typer.Option(24, "--t-in", help="Input window length (matrices)."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        epochs: int | None = typer.Option(None, "--epochs", help="Epochs when a learned model is "
                                             "fitted on the fly."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
    ) -> None:
        """Metrics table on the test split beside persistence, plus PNGs.

        Per horizon: LEAD's per-matrix-normalised RMSE/MAE and RMSE/MAE in Mbit/s and NMAE
        (metrics.json, table.md); od_pairs.png (true vs predicted) and error_heatmap.png.
        """
        _evaluate(model, data, out, horizons=horizons, t_in=t_in, samples=samples, seed=seed, epochs=epochs,
                  write_npz=False, steps=steps, max_origins=max_origins, device=device)
