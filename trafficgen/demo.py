"""`make demo`: the main job on shipped real data, end to end.

1. ingest the shipped nDPI captures (real pcaps + nDPI labels) into a FlowSet and summarise it;
2. train the default LLaMA-style generator once (cached) or reuse it;
3. sample flows for a few classes;
4. score the samples against the real flows of those classes (fidelity, privacy).

Outputs go to ``demo_out/``: ``ndpi_flows.parquet`` and ``synthetic.parquet`` (the real and the
sampled flows), ``fidelity.json`` / ``fidelity.md`` (per class and macro), ``radar.png`` (the
fidelity and privacy scores, 1 = best) and ``demo.json`` (the summary).

Progress (ingest, training, sampling) goes to stderr: a bar on a terminal, plain periodic lines
in a log (``make demo > log 2>&1``).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_CLASSES = ("YouTube", "NetFlix", "Zoom", "DNS")


def main(out_dir: str | Path = "demo_out", n_per_class: int = 200) -> dict:
    from trafficgen.datasets import load_ndpi_apps

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a log file sees each step as it happens
    console = Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    console.rule("1. ingest the shipped real captures")
    t0 = time.perf_counter()
    flows = load_ndpi_apps(progress=True)
    t_ingest = time.perf_counter() - t0
    flows.to_parquet(out / "ndpi_flows.parquet")
    summary = flows.summary()
    stats = flows.meta.get("ingest_stats", {})
    table = Table(title=f"nDPI apps: {len(flows)} biflows, {len(flows.classes)} classes "
                        f"(ingested in {t_ingest:.2f} s)")
    table.add_column("class")
    table.add_column("flows", justify="right")
    table.add_column("mean packets", justify="right")
    for cls, count in sorted(summary["class_counts"].items(), key=lambda kv: -kv[1]):
        sub = flows.select(cls)
        table.add_row(cls, str(count), f"{sub.n_packets.mean():.1f}")
    console.print(table)
    if stats:
        console.print(f"packets read {stats.get('packets')}, decoded {stats.get('decoded')}, "
                      f"skipped {sum(stats.get('skipped', {}).values())}")

    console.rule("2. default generator (shipped weights)")
    from trafficgen.pretrained.default_model import get_default_model

    t0 = time.perf_counter()
    model = get_default_model(progress=True)
    console.print(f"{type(model).__name__} ready in {time.perf_counter() - t0:.1f} s")

    console.rule("3. sample")
    classes = [c for c in DEMO_CLASSES if c in model.classes_]
    synth = model.sample(n_per_class * len(classes), cls=[c for c in classes for _ in range(n_per_class)],
                         random_state=0, progress=True)
    synth.to_parquet(out / "synthetic.parquet")
    console.print(f"sampled {len(synth)} flows for {', '.join(classes)} -> {out / 'synthetic.parquet'}")
    for c in classes:
        example = synth.select(c).sequences()[0]
        console.print(f"  {c:10s} e.g. {example}")

    console.rule("4. fidelity and privacy against the real flows")
    from trafficgen._io import atomic_path
    from trafficgen.evaluation.plots import radar_plot
    from trafficgen.evaluation.report import FidelityReport

    real = flows.select(classes)
    # the default model was trained on all shipped flows: leakage and novelty are measured
    # against all of them (a copy of a flow of another class is still a copy)
    report = FidelityReport.compute(real, synth, name="default llama", train=flows)
    report.to_json(out / "fidelity.json")
    with atomic_path(out / "fidelity.md") as tmp:
        tmp.write_text(report.to_markdown())
    radar_plot({report.name: report.scores()}, out / "radar.png", title="default llama vs real (1 = best)")
    for line in report.warnings():
        console.print(f"note: {line}")
    table = Table(title="fidelity (JSD: 0 = identical) and privacy, per class")
    names = list(report.metrics)
    table.add_column("class")
    for n in names:  # short headers so the table fits 80 columns
        table.add_column(n.removesuffix("_jsd").replace("packet_count", "packets"), justify="right")
    for c in classes:
        table.add_row(c, *[f"{report.metrics[n]['per_class'][c]:.3f}" for n in names])
    table.add_row("macro", *[f"{report.metrics[n]['value']:.3f}" for n in names])
    console.print(table)
    result = {"n_flows": len(flows), "classes": len(flows.classes), "ingest_s": t_ingest,
              "sampled": len(synth), "fidelity": report.to_dict()}
    (out / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    console.print(f"wrote {out}/ (flows, samples, fidelity report, radar.png)")
    return result


if __name__ == "__main__":
    main()
