"""Runner of the ``lightweight_ntg`` recipe: llama, mamba, netdiffus, cvae under one budget.

For each data set (the shipped nDPI apps and CICDOH20):

1. one stratified split (``test_size``, ``seed``); every generator is fitted on the training
   part only (timed, with peak memory);
2. RQ1-RQ3 through :func:`trafficgen.experiments.run_evaluation.run_evaluation` on the same split
   (fidelity + radar, TSTR beside train-on-real, augmentation curves beside SMOTE, Fast
   Retransmit and no augmentation), written by ``write_evaluation`` into ``<out>/<dataset>/``;
3. RQ4: every neural generator is quantized to int8 (weight-only and dynamic, see
   :mod:`trafficgen.generators.quantization`); fidelity and TSTR are re-run on the quantized
   models with the same seeds and the deltas (int8 - fp32) are reported beside parameters, disk
   size, training time, peak memory and generation latency (``efficiency.json`` / ``.md``).

A generator whose module is not importable in this build is skipped and listed in the summary.
The runner returns the headline numbers; ``summary.md`` links every table and plot.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from trafficgen.errors import ConfigError
from trafficgen.recipes.runner import device_params

LOADERS = {"ndpi": "load_ndpi_apps", "cicdoh20": "load_cicdoh20"}

#: The recipe's top-level keys (the runner rejects any other: a typo is an error, never dropped).
CONFIG_KEYS = ("name", "runner", "seed", "datasets", "max_flows_per_class", "max_classes", "max_packets",
               "test_size", "generators", "quantize", "evaluation", "efficiency", "quick", "quick_mode",
               "progress", "description", "threads")
MODE_SUFFIX = {"weight-only": "int8-wo", "dynamic": "int8-dyn"}


#: Keys of the nested sections.
SECTION_KEYS = {"evaluation": ("seeds", "n_estimators", "fractions", "draws"), "efficiency": ("batch_sizes", "repeats"),
                "quantize": ("generators", "modes")}


def check_sections(config: dict) -> None:
    """Reject unknown keys in the nested sections and unknown data sets."""
    for section, known in SECTION_KEYS.items():
        unknown = sorted(set(config.get(section) or {}) - set(known))
        if unknown:
            raise ConfigError(f"recipe {section}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(known)}")
    bad = sorted(d for d in config.get("datasets", LOADERS) if d not in LOADERS and not Path(d).is_file())
    if bad:
        raise ConfigError(f"recipe datasets: unknown {', '.join(map(repr, bad))}; known: {', '.join(LOADERS)} "
                          "or the path of a FlowSet file")


def dataset_key(name: str) -> str:
    """The results key of a data set: its name, or a FlowSet file's stem."""
    return name if name in LOADERS else Path(name).stem


def _load(name: str, config: dict):
    """A shipped data set (``ndpi``, ``cicdoh20``) or a FlowSet file (.parquet / .jsonl / .csv),
    truncated, class-limited and capped as the config says."""
    import trafficgen.datasets as ds
    from trafficgen.data.flowset import FlowSet

    raw = getattr(ds, LOADERS[name])() if name in LOADERS else FlowSet.read(name)
    flows = raw.truncate(int(config.get("max_packets") or 32))
    counts = flows.class_counts()
    classes = sorted(counts, key=lambda c: (-counts[c], c))[: config.get("max_classes") or None]
    cap = config.get("max_flows_per_class")
    if isinstance(cap, dict):  # per data set
        cap = cap.get(name)
    idx = []
    for c in sorted(classes):
        rows = np.flatnonzero(flows.labels == c)
        idx.extend(rows[:cap] if cap else rows)
    return flows[np.sort(np.asarray(idx))]


def _fidelity_mean(report) -> float:
    """Mean of the four fidelity JSDs (lower is better)."""
    from trafficgen.evaluation.fidelity import FIDELITY_METRICS

    return float(np.mean([report.values()[m.name] for m in FIDELITY_METRICS]))


def _fit_generators(config: dict, train, seed: int, skipped: list, step=lambda text: None) -> tuple[dict, dict]:
    from trafficgen.experiments.profiling import PeakMemory
    from trafficgen.registry import get_generator

    fitted, train_stats = {}, {}
    for name, params in config["generators"].items():
        try:
            cls = get_generator(name)
        except (ModuleNotFoundError, AttributeError) as exc:
            skipped.append(f"{name}: {exc}")
            continue
        step(f"fitting {name}")
        accepted = cls._param_names()
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(f"recipe generators.{name}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(accepted)}")
        kw = {**params, **{k: v for k, v in {"random_state": seed, "progress": False}.items() if k in accepted},
              **device_params(cls, config)}
        gen = cls(**kw)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            gen.fit(train)
            elapsed = time.perf_counter() - t0
        epochs = len(getattr(gen, "history_", {}).get("train_loss", [])) or int(kw.get("epochs", 1))
        fitted[name] = gen
        train_stats[name] = (elapsed / epochs, mem.peak_rss_mb, mem.peak_mb)
    return fitted, train_stats


def _run_dataset(ds_name: str, config: dict, out: Path, seed: int, skipped: list, step=lambda text: None) -> dict:
    from trafficgen.evaluation.report import FidelityReport, write_evaluation
    from trafficgen.experiments.profiling import profile_generator
    from trafficgen.experiments.run_evaluation import run_evaluation, score_draws
    from trafficgen.generators.quantization import quantize_generator

    flows = _load(ds_name, config)
    ds_name = dataset_key(ds_name)
    test_size = float(config.get("test_size", 0.3))
    train, test = flows.train_test_split(test_size, random_state=seed)
    fitted, train_stats = _fit_generators(config, train, seed, skipped, lambda t: step(f"{ds_name}: {t}"))
    step(f"{ds_name}: RQ1-RQ3 (sampling, fidelity, TSTR, augmentation)")
    ev = config.get("evaluation", {})
    seeds, n_est = int(ev.get("seeds", 3)), int(ev.get("n_estimators", 100))
    results = run_evaluation(flows, fitted, test_size=test_size, split_seed=seed, seeds=seeds,
                             fractions=ev.get("fractions"), n_estimators=n_est, draws=int(ev.get("draws", 1)))
    write_evaluation(results, out / ds_name)
    fid = {r["name"]: FidelityReport.from_dict(r) for r in results["fidelity"]}

    eff = config.get("efficiency", {})
    prof_kw = dict(batch_sizes=[int(b) for b in eff.get("batch_sizes", [1, 1000])],
                   repeats=int(eff.get("repeats", 2)))
    rows = []
    qcfg = config.get("quantize", {})
    for name, gen in fitted.items():
        step(f"{ds_name}: RQ4 {name}")
        row = profile_generator(gen, name=name, **prof_kw)
        row["train_s_per_epoch"], row["train_peak_rss_mb"], row["train_peak_mb"] = train_stats[name]
        row.update(dataset=ds_name, fidelity=_fidelity_mean(fid[name]) if name in fid else None,
                   tstr_macro_f1=results["tstr"].get(name, {}).get("macro_f1_mean"))
        rows.append(row)
        if name not in qcfg.get("generators", []):
            continue
        for mode in qcfg.get("modes", ["weight-only", "dynamic"]):
            step(f"{ds_name}: RQ4 {name} int8 {mode}")
            q = quantize_generator(gen, mode=mode)
            qname = f"{name}-{MODE_SUFFIX[mode]}"
            # the fp32 model's seeds and number of draws, so that the deltas below are paired
            rep, t, _ = score_draws(q, name, train, test, draws=results["draws"], seeds=list(range(seeds)),
                                    n_packets=test.max_packets, n_estimators=n_est)
            qrow = profile_generator(q, name=qname, **prof_kw)
            qrow.update(dataset=ds_name, fidelity=_fidelity_mean(rep), tstr_macro_f1=t["macro_f1_mean"])
            if row["fidelity"] is not None:
                qrow["fidelity_delta"] = qrow["fidelity"] - row["fidelity"]
            if row["tstr_macro_f1"] is not None:
                qrow["tstr_delta"] = qrow["tstr_macro_f1"] - row["tstr_macro_f1"]
            rows.append(qrow)
    t_real = results["tstr"]["train_on_real"]["macro_f1_mean"]
    return {"n_flows": len(flows), "n_train": len(train), "n_test": len(test), "classes": flows.classes,
            "fidelity": {n: r.values() for n, r in fid.items()},
            "tstr": {n: r["macro_f1_mean"] for n, r in results["tstr"].items()}, "train_on_real": t_real,
            "draws": results["draws"],
            "tstr_draw_means": {n: r["draw_means"] for n, r in results["tstr"].items() if "draw_means" in r},
            "fidelity_sd": {n: {k: m["value_sd"] for k, m in r.metrics.items() if "value_sd" in m}
                            for n, r in fid.items() if any("value_sd" in m for m in r.metrics.values())},
            "nll": {n: {k: v for k, v in r.items() if k != "per_class"} for n, r in results["nll"].items()},
            "augmentation": results["augmentation"]["methods"], "efficiency": rows}


def run(config: dict, out_dir: Path, quick: bool) -> dict:
    """Recipe entry point (see :mod:`trafficgen.recipes.runner`)."""
    from rich.console import Console
    from rich.progress import Progress, TimeElapsedColumn

    from trafficgen._progress import resolve_mode
    from trafficgen.experiments.profiling import efficiency_table_markdown, write_efficiency

    out_dir = Path(out_dir)
    check_sections(config)
    seed = int(config.get("seed", 0))
    skipped: list[str] = []
    per_ds = {}
    datasets = config.get("datasets", list(LOADERS))
    gens, qcfg = list(config["generators"]), config.get("quantize", {})
    n_quant = sum(g in qcfg.get("generators", []) for g in gens) * len(qcfg.get("modes", ["weight-only", "dynamic"]))
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=Console(stderr=True),
                  disable=not config.get("progress", True)) as bar:
        task = bar.add_task("lightweight_ntg", total=len(datasets) * (2 * len(gens) + 1 + n_quant))
        started = [False]

        lines = config.get("progress", True) and resolve_mode() == "lines"  # a log: rich hides its bar
        t_start = time.perf_counter()

        def step(text: str) -> None:  # one call per stage: the previous stage is done
            bar.update(task, description=text, advance=1 if started[0] else 0)
            started[0] = True
            if lines:
                done = int(bar.tasks[0].completed)
                print(f"lightweight_ntg: stage {done + 1}/{int(bar.tasks[0].total)} {text} "
                      f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

        for ds_name in datasets:
            per_ds[dataset_key(ds_name)] = _run_dataset(ds_name, config, out_dir, seed, skipped, step)
        bar.update(task, completed=bar.tasks[0].total, description="lightweight_ntg: done")
    rows = [r for d in per_ds.values() for r in d["efficiency"]]
    write_efficiency(rows, out_dir)
    md = [f"# lightweight_ntg{' (quick)' if quick else ''}", "",
          f"seed {seed}; generators: {', '.join(config['generators'])}. Timings on "
          f"{rows[0]['device'] if rows else 'cpu'} (wall clock, shared machine).", ""]
    if skipped:
        md += ["Skipped generators (not available in this build):", ""] + [f"- {s}" for s in sorted(set(skipped))] + [""]
    for ds_name, d in per_ds.items():
        md += [f"## {ds_name}: {d['n_flows']} flows, {len(d['classes'])} classes "
               f"({d['n_train']} train / {d['n_test']} test)", "",
               f"RQ1 fidelity (+ radar), RQ2 TSTR, RQ3 augmentation: [{ds_name}/report.md]({ds_name}/report.md), "
               f"![radar]({ds_name}/radar.png) ![augmentation]({ds_name}/augmentation.png)", "",
               f"TSTR macro F1 (train-on-real = {d['train_on_real']:.4f}): "
               + ", ".join(f"{k} {v:.4f}" for k, v in d["tstr"].items() if k != "train_on_real"), "",
               "### RQ4 efficiency (fidelity = mean of the 4 JSDs; deltas = int8 - fp32)", "",
               efficiency_table_markdown(d["efficiency"])]
    (out_dir / "summary.md").write_text("\n".join(md))
    return {"datasets": {k: {kk: v for kk, v in d.items() if kk != "augmentation"} for k, d in per_ds.items()},
            "skipped_generators": sorted(set(skipped)),
            "files": sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()),
            "config_seed": seed, "efficiency_rows": json.loads(json.dumps(rows))}
