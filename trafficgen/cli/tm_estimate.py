"""`trafficgen tm synthesize` (sample TMs from a trained DDPM-TME) and `trafficgen tm estimate`
(TMs from link loads: DDPM-TME, or the tomogravity / gravity / pinv baselines)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

_METHODS = ("ddpm-tme", "tomogravity", "gravity", "pinv")


def _read_matrix(path: Path, what: str):
    import numpy as np

    from trafficgen.errors import InputFormatError

    if not path.exists():
        raise InputFormatError(f"{what} file not found", path=path)
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        from trafficgen.data.routing import read_routing_csv

        if what == "routing":
            return read_routing_csv(path)
        try:
            arr = np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError as exc:
            raise InputFormatError(f"cannot parse {what} CSV: {exc}", path=path) from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise InputFormatError(f"{what} must be a finite 2-D array, got shape {arr.shape}", path=path)
    return arr


def _save_npy(path: Path, arr) -> None:
    import numpy as np

    from trafficgen._io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @tm_app.command("synthesize")
    def synthesize(
        model: Path = typer.Option(..., "--model", help="A saved DDPM-TME directory."),
        n: int = typer.Option(1000, "-n", help="Number of matrices."),
        out: Path = typer.Option(..., "-o", "--out", help="Output .npy (n, N, N) in the model's unit."),
        seed: int = typer.Option(0, "--seed"),
        steps: int = typer.Option(None, "--steps", help="DDIM steps (default: the model's)."),
    ) -> None:
        """Sample synthetic traffic matrices."""
        from trafficgen.generators.tm.ddpm_tme.model import DDPMTME

        m = DDPMTME.from_pretrained(model)
        series = m.sample(n, random_state=seed, steps=steps)
        _save_npy(out, series.values)
        meta = {"n": n, "nodes": series.nodes, "unit": series.unit, "interval_s": series.interval_s, "seed": seed}
        out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        typer.echo(f"wrote {out}: {n} matrices {series.values.shape[1:]} in {series.unit}")

    @tm_app.command("estimate")
    def estimate(
        link_loads: Path = typer.Option(..., "--link-loads", help="Y (T, L): CSV (no header) or .npy."),
        routing: Path = typer.Option(..., "--routing", help="A (N*N, L): CSV (no header) or .npy; Y = X A."),
        out: Path = typer.Option(..., "-o", "--out", help="Output .npy (T, N, N)."),
        method: str = typer.Option("ddpm-tme", "--method", help="ddpm-tme | tomogravity | gravity | pinv."),
        model: Path = typer.Option(None, "--model", help="Saved DDPM-TME directory (method ddpm-tme)."),
        n_init: int = typer.Option(1024, "--n-init", help="Candidate pool size (Algorithm 2, step 1)."),
        n_starts: int = typer.Option(16, "--n-starts", help="Best pool candidates optimised and averaged per target."),
        n_opt: int = typer.Option(5, "--n-opt", help="Adam iterations on the sampling noises."),
        lr: float = typer.Option(0.01, "--lr", help="Adam step size on the noises."),
        steps: int = typer.Option(5, "--steps", help="DDIM steps of the differentiable sampler."),
        loss: str = typer.Option("l1", "--loss", help="l1 | l2."),
        projection: str = typer.Option("kl", "--projection",
                                       help="Final projection onto the link loads: kl | wls | none."),
        batch_size: int = typer.Option(64, "--batch-size"),
        seed: int = typer.Option(0, "--seed"),
        truth: Path = typer.Option(None, "--truth", help="Optional true TMs (.npy (T,N,N)) to score."),
    ) -> None:
        """Estimate traffic matrices from link loads (progress bar over time points)."""
        import time

        import numpy as np

        from trafficgen.errors import ConfigError
        from trafficgen.evaluation.tm.estimation_metrics import estimation_report, link_residual

        if method not in _METHODS:
            raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(_METHODS)}")
        Y = _read_matrix(link_loads, "link loads")
        A = _read_matrix(routing, "routing")
        if A.shape[1] != Y.shape[1]:
            raise ConfigError(f"{link_loads}: {Y.shape[1]} link loads per row but routing has {A.shape[1]} links")
        t0 = time.perf_counter()
        if method == "ddpm-tme":
            if model is None:
                raise ConfigError("--method ddpm-tme needs --model DIR")
            from trafficgen.generators.tm.ddpm_tme.model import DDPMTME

            m = DDPMTME.from_pretrained(model)
            x = m.estimate(Y, A, n_init=n_init, n_starts=n_starts, n_opt=n_opt, lr=lr, steps=steps, loss=loss,
                           batch_size=batch_size, projection=projection, random_state=seed, progress=True)
        else:
            from trafficgen.estimation import classic

            x = {"tomogravity": classic.tomogravity_estimate, "gravity": classic.gravity_estimate,
                 "pinv": classic.pinv_estimate}[method](Y, A)
        dt = time.perf_counter() - t0
        n = int(round(np.sqrt(A.shape[0])))
        _save_npy(out, x.reshape(len(Y), n, n))
        report = {"method": method, "n_matrices": len(Y), "seconds": dt, "matrices_per_s": len(Y) / max(dt, 1e-9),
                  "link_residual_mean": float(link_residual(x, Y, A).mean())}
        if truth is not None:
            report.update(estimation_report(np.load(truth), x, Y, A))
        out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        typer.echo(f"wrote {out}: {len(Y)} matrices by {method} in {dt:.1f} s "
                   f"(link residual {report['link_residual_mean']:.3g})")
