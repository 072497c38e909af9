"""`trafficgen tm synthesize` (sample TMs from a trained DDPM-TME) and `trafficgen tm estimate`
(TMs from link loads: DDPM-TME, or the tomogravity / gravity / pinv baselines).

`tm estimate` reads and checks every input (link loads, routing matrix, node totals, truth, model)
before any work and writes its two outputs (``.npy`` estimate, ``.json`` report) only at the end,
each under a temporary name renamed on success: a bad call leaves nothing behind.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

_METHODS = ("ddpm-tme", "tomogravity", "gravity", "pinv")
_NEEDS_TOTALS = ("tomogravity", "gravity")
_SPLIT = (0.7, 0.15, 0.15)  # as `tm train`: a DDPM-TME trained there never saw the test part


def _read_matrix(path: Path, what: str):
    """A finite 2-D float64 array from a .npy or a header-less CSV (the routing matrix through
    :func:`~trafficgen.data.routing.read_routing_csv`)."""
    import numpy as np

    from trafficgen.errors import InputFormatError

    if not path.exists():
        raise InputFormatError(f"{what} file not found", path=path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputFormatError(f"not a readable .npy array: {exc}", path=path) from None
        if not np.issubdtype(arr.dtype, np.number):
            raise InputFormatError(f"{what} must be numeric, got dtype {arr.dtype}", path=path)
    else:
        from trafficgen.data.routing import read_routing_csv

        if what == "routing":
            return read_routing_csv(path)
        try:
            arr = np.loadtxt(path, delimiter=",", ndmin=2)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputFormatError(f"cannot parse {what} CSV: {exc}", path=path) from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputFormatError(f"{what} must be a finite, non-empty 2-D array, got shape {arr.shape}", path=path)
    return arr


def _n_nodes(A, where) -> int:
    """N of a routing matrix with N*N rows, or one clear error naming ``where``."""
    import math

    from trafficgen.errors import InputFormatError

    n = math.isqrt(A.shape[0])
    if n * n != A.shape[0] or n < 2:
        raise InputFormatError(f"the routing matrix has {A.shape[0]} rows, not N*N for any N >= 2 "
                               "(one row per OD pair i -> j, origin-major)", path=where)
    return n


def _read_truth(path: Path, T: int, n: int):
    """(values (T, N*N), unit or None, interval_s or None) of the true TMs in ``path`` (.npy, with
    its sidecar's unit when there is one)."""
    import numpy as np

    from trafficgen.errors import InputFormatError

    if not path.exists():
        raise InputFormatError("truth file not found", path=path)
    if path.suffix != ".npy":
        raise InputFormatError("--truth must be a .npy array (T, N, N) or (T, N*N)", path=path)
    unit = interval = None
    if path.with_name(path.name + ".json").exists():
        from trafficgen.data.tm import read_tm_npy

        series = read_tm_npy(path)
        x, unit, interval = series.values, series.unit, series.interval_s
    else:
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputFormatError(f"not a readable .npy array: {exc}", path=path) from None
        if not np.issubdtype(x.dtype, np.number):
            raise InputFormatError(f"truth must be numeric, got dtype {x.dtype}", path=path)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3 and x.shape[1] == x.shape[2]:
        n_truth = x.shape[1]
    elif x.ndim == 2:
        n_truth = int(round(np.sqrt(x.shape[1])))
        if n_truth * n_truth != x.shape[1]:
            raise InputFormatError(f"truth has {x.shape[1]} values per row, not N*N", path=path)
    else:
        raise InputFormatError(f"truth must be (T, N, N) or (T, N*N), got shape {x.shape}", path=path)
    if n_truth != n:
        raise InputFormatError(f"truth has {n_truth} nodes but the routing matrix has {n} "
                               f"({n * n} OD rows)", path=path)
    if len(x) != T:
        raise InputFormatError(f"truth holds {len(x)} matrices but the link loads {T} rows", path=path)
    if not np.all(np.isfinite(x)):
        raise InputFormatError("truth contains NaN or infinite values", path=path)
    return x.reshape(T, n * n), unit, interval


def _read_node_totals(path: Path, T: int, n: int):
    """(egress (T, N), ingress (T, N)) from a (T, 2N) file: N egress columns, then N ingress."""
    from trafficgen.errors import InputFormatError

    arr = _read_matrix(path, "node totals")
    if arr.shape != (T, 2 * n):
        raise InputFormatError(f"node totals must be (T, 2N) = ({T}, {2 * n}): per row the egress of "
                               f"each of the {n} nodes, then their ingress; got {arr.shape}", path=path)
    if (arr < 0).any():
        raise InputFormatError("node totals must be non-negative", path=path)
    return arr[:, :n], arr[:, n:]


def _mbit_factor(unit: str, interval_s: float) -> float:
    """Multiplier from ``unit`` (per ``interval_s``) to Mbit/s."""
    import numpy as np

    from trafficgen.data.tmseries import TMSeries

    return float(TMSeries(np.ones((1, 1, 1)), ["x"], interval_s, unit).to_unit("Mbit/s").values[0, 0, 0])


def _check_out(out: Path) -> None:
    from trafficgen.errors import ConfigError

    for p in (out, out.with_suffix(".json")):
        if p.is_dir():
            raise ConfigError(f"output {p} is a directory; give a file name such as est.npy")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {out}: {parent} is not a directory")


def _save_npy(path: Path, arr) -> None:
    import numpy as np

    from trafficgen._io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)


def _score(x, xh, Y, A, mbit: float | None) -> dict:
    """Estimation errors: RMSE (Mbit/s when the unit is known), TRE, SRE, link residual."""
    from trafficgen.evaluation.tm.estimation_metrics import estimation_report

    rep = estimation_report(x, xh, Y, A)
    if mbit is None:
        return rep
    rep["rmse_mbps"] = rep.pop("rmse") * mbit
    rep["rmse_t_mbps"] = {k: v * mbit for k, v in rep.pop("rmse_t").items()}
    return rep


def _inputs(data, part, link_loads, routing, truth, max_matrices):
    """(Y (T, L), A (n_od, L), routing label, X (T, n_od) or None, unit, interval_s, source)."""
    from trafficgen.errors import ConfigError

    if data is not None:
        from trafficgen.cli.tm import load_series
        from trafficgen.data.routing import link_loads as make_loads
        from trafficgen.data.windows import chronological_split

        if link_loads is not None or truth is not None:
            raise ConfigError("--data builds the link loads (and the truth) from the data's matrices; "
                              "pass either --data or --link-loads/--truth, not both")
        if part not in ("test", "all"):
            raise ConfigError(f"--part must be 'test' or 'all', got {part!r}")
        series = load_series(data)
        if routing is not None:
            A, where = _read_matrix(routing, "routing"), routing
        elif data.lower() in ("abilene", "geant"):
            from trafficgen.datasets.tm import shipped_routing

            A, where = shipped_routing(data), f"the shipped {data.lower()} routing matrix"
        else:
            raise ConfigError(f"--data {data} needs --routing A.csv (N*N = {series.n_nodes ** 2} rows, "
                              "one column per link); only abilene and geant ship one")
        n = _n_nodes(A, where)
        if n != series.n_nodes:
            raise ConfigError(f"{where} has {n * n} OD rows but {data} has {series.n_nodes} nodes")
        sel = chronological_split(series, _SPLIT)[2] if part == "test" else series
        X = sel.flat[:max_matrices] if max_matrices else sel.flat
        source = {"data": data, "part": part, "first_index": len(series) - len(sel) if part == "test" else 0,
                  "routing": str(where)}
        return make_loads(X, A), A, where, X, sel.unit, sel.interval_s, source
    if link_loads is None or routing is None:
        raise ConfigError("pass --link-loads Y.csv and --routing A.csv, or --data abilene|geant|FILE")
    Y = _read_matrix(link_loads, "link loads")
    A = _read_matrix(routing, "routing")
    if A.shape[1] != Y.shape[1]:
        raise ConfigError(f"{link_loads}: {Y.shape[1]} link loads per row but routing {routing} has "
                          f"{A.shape[1]} links (columns)")
    if max_matrices:
        Y = Y[:max_matrices]
    return Y, A, routing, None, None, None, {"link_loads": str(link_loads), "routing": str(routing)}


def _place(model, device: str) -> None:
    """Run a loaded model on ``device`` (where it takes one)."""
    if "device" in model._param_names():
        model.set_params(device=device)


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @tm_app.command("synthesize")
    def synthesize(
        model: Path = typer.Option(..., "--model", help="A saved DDPM-TME directory."),
        n: int = typer.Option(1000, "-n", help="Number of matrices."),
        out: Path = typer.Option(..., "-o", "--out", help="Output .npy (n, N, N) in the model's unit."),
        seed: int = typer.Option(0, "--seed"),
        steps: int = typer.Option(None, "--steps", help="DDIM steps (default: the model's)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
    ) -> None:
        """Sample synthetic traffic matrices."""
        from trafficgen._io import atomic_path
        from trafficgen.cli.tm import check_device
        from trafficgen.generators.tm.ddpm_tme.model import DDPMTME

        check_device(device)
        _check_out(out)
        m = DDPMTME.from_pretrained(model)
        _place(m, device)
        series = m.sample(n, random_state=seed, steps=steps)
        _save_npy(out, series.values)
        meta = {"n": n, "nodes": series.nodes, "unit": series.unit, "interval_s": series.interval_s, "seed": seed}
        with atomic_path(out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        typer.echo(f"wrote {out}: {n} matrices {series.values.shape[1:]} in {series.unit}")

    @tm_app.command("estimate")
    def estimate(
        link_loads: Path = typer.Option(None, "--link-loads", help="Y (T, L): CSV (no header) or .npy."),
        routing: Path = typer.Option(None, "--routing", help="A (N*N, L): CSV (no header) or .npy; Y = X A. "
                                     "Default with --data abilene|geant: the shipped one."),
        data: str = typer.Option(None, "--data", help="abilene | geant | a TM file: link loads (and the "
                                 "truth) built from its matrices and the routing matrix, instead of --link-loads."),
        part: str = typer.Option("test", "--part", help="With --data: 'test' (the last 15 %, which "
                                 "`tm train` never fits on) or 'all'."),
        max_matrices: int = typer.Option(None, "--max-matrices", min=1, help="Estimate only the first M "
                                         "matrices (rows of link loads)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output .npy (T, N, N) + a .json report beside it."),
        method: str = typer.Option("ddpm-tme", "--method", help="ddpm-tme | tomogravity | gravity | pinv."),
        model: Path = typer.Option(None, "--model", help="Saved DDPM-TME directory (method ddpm-tme)."),
        node_totals: Path = typer.Option(None, "--node-totals", help="(T, 2N) CSV/.npy: each node's egress "
                                         "then ingress per interval, for gravity/tomogravity when the "
                                         "routing matrix has no access links."),
        unit: str = typer.Option(None, "--unit", help="Unit of the link loads (bytes, 100bytes, bit/s, "
                                 "kbit/s, Mbit/s, Gbit/s): errors are then reported in Mbit/s."),
        interval_s: float = typer.Option(None, "--interval-s", help="Seconds per interval (needed for "
                                         "bytes / 100bytes)."),
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
        device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, "
                                   "cuda:N or mps."),
    ) -> None:
        """Estimate traffic matrices from link loads (progress bar over time points).

        The report (.json beside the output) holds the link residual and, with a truth (--truth, or
        --data), RMSE in Mbit/s (when the unit is known: --data, --unit, or the truth's sidecar),
        TRE and SRE, with tomogravity beside the method when the node totals are known.
        """
        import time

        from trafficgen.cli.tm import check_device
        from trafficgen.data.tmseries import UNITS
        from trafficgen.errors import ConfigError
        from trafficgen.estimation import classic
        from trafficgen.evaluation.tm.estimation_metrics import link_residual

        check_device(device)

        # ---- validate everything before any work
        if method not in _METHODS:
            raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(_METHODS)}")
        _check_out(out)
        if unit is not None and unit not in UNITS:
            raise ConfigError(f"--unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if unit in ("bytes", "100bytes") and interval_s is None:
            raise ConfigError(f"--unit {unit} is per interval: pass --interval-s too")
        if interval_s is not None and not interval_s > 0:
            raise ConfigError(f"--interval-s must be positive, got {interval_s}")
        Y, A, where, X, data_unit, data_interval, source = _inputs(data, part, link_loads, routing, truth,
                                                                   max_matrices)
        n = _n_nodes(A, where)
        T = len(Y)
        if truth is not None:
            X, truth_unit, truth_interval = _read_truth(truth, T, n)
            data_unit, data_interval = truth_unit, truth_interval
        if unit is not None:
            data_unit, data_interval = unit, interval_s if interval_s is not None else 1.0
        totals = None
        has_access = classic.find_access_links(A) is not None
        if node_totals is not None:
            if method not in _NEEDS_TOTALS:
                raise ConfigError(f"--node-totals is used by gravity and tomogravity, not {method}")
            totals = _read_node_totals(node_totals, T, n)
        elif method in _NEEDS_TOTALS and not has_access:
            raise ConfigError(f"{method} needs each node's total egress and ingress traffic, and routing "
                              f"{where} ({A.shape[0]} x {A.shape[1]}) has no access-link columns to read "
                              f"them from the link loads (a column summing all OD pairs leaving, or "
                              f"entering, one node); pass --node-totals FILE (T x {2 * n}: egress of each "
                              f"node, then ingress) or use a routing matrix with access links")
        m = None
        if method == "ddpm-tme":
            if model is None:
                raise ConfigError("--method ddpm-tme needs --model DIR (a `trafficgen tm train --model "
                                  "ddpm-tme` output)")
            from trafficgen.generators.tm.ddpm_tme.model import DDPMTME

            m = DDPMTME.from_pretrained(model)
            _place(m, device)
            if m.n_nodes_ != n:
                raise ConfigError(f"model {model} was trained on {m.n_nodes_} nodes but routing {where} "
                                  f"has {n * n} OD rows ({n} nodes)")
        mbit = _mbit_factor(data_unit, data_interval) if data_unit is not None else None

        # ---- the work
        t0 = time.perf_counter()
        egress, ingress = totals if totals is not None else (None, None)
        if m is not None:
            x = m.estimate(Y, A, n_init=n_init, n_starts=n_starts, n_opt=n_opt, lr=lr, steps=steps, loss=loss,
                           batch_size=batch_size, projection=projection, random_state=seed, progress=True)
        elif method == "pinv":
            x = classic.pinv_estimate(Y, A)
        else:
            fn = classic.tomogravity_estimate if method == "tomogravity" else classic.gravity_estimate
            x = fn(Y, A, egress=egress, ingress=ingress)
        dt = time.perf_counter() - t0
        report = {"method": method, "n_matrices": T, "n_nodes": n, "seconds": dt,
                  "matrices_per_s": T / max(dt, 1e-9), "link_residual_mean": float(link_residual(x, Y, A).mean()),
                  "source": source}
        summary = ""
        if X is not None:
            report["unit"] = "Mbit/s" if mbit is not None else "input unit (pass --unit for Mbit/s)"
            report.update(_score(X, x, Y, A, mbit))
            rmse_key = "rmse_mbps" if mbit is not None else "rmse"
            rmse_unit = " Mbit/s" if mbit is not None else ""
            summary = f"; RMSE {report[rmse_key]:.4g}{rmse_unit}, TRE mean {report['tre']['mean']:.4g}"
            if method != "tomogravity" and (totals is not None or has_access):
                base = classic.tomogravity_estimate(Y, A, egress=egress, ingress=ingress)
                report["baseline_tomogravity"] = _score(X, base, Y, A, mbit)
                b = report["baseline_tomogravity"]
                summary += f" (tomogravity: RMSE {b[rmse_key]:.4g}{rmse_unit}, TRE mean {b['tre']['mean']:.4g})"

        # ---- write last, each file under a temporary name
        from trafficgen._io import atomic_path

        _save_npy(out, x.reshape(T, n, n))
        with atomic_path(out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
        typer.echo(f"wrote {out}: {T} matrices by {method} in {dt:.1f} s "
                   f"(link residual {report['link_residual_mean']:.3g}){summary}")
