"""`FidelityReport`: fidelity + privacy metrics of one synthetic set against real flows.

Holds, for every metric, its direction, range, per-class breakdown and macro average;
serialises to JSON and Markdown. ``scores()`` gives the "bigger is better" values used by the
radar plot (``1 - value`` for a lower-is-better metric on [0, 1]).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.evaluation.metric import Metric


def default_metrics(real: FlowSet | None = None) -> list[Metric]:
    """The four fidelity JSDs, the IAT JSD when ``real`` carries timing (NaN for a synthetic set
    without: shown as n/a, never as a score), and the privacy metrics."""
    from trafficgen.evaluation.fidelity import IATJSD, fidelity_metrics
    from trafficgen.evaluation.privacy import PRIVACY_METRICS

    timing = [IATJSD()] if real is not None and real.iat is not None else []
    return fidelity_metrics() + timing + [cls() for cls in PRIVACY_METRICS]


def _cell(value: float) -> str:
    """A table cell: 4 decimals, ``n/a`` for an undefined (NaN) value."""
    return "n/a" if value != value else f"{value:.4f}"


def _sd(metric: dict) -> str:
    """`` +- sd (K draws)`` for a metric averaged over synthetic draws, else nothing."""
    return f" +- {metric['value_sd']:.4f} ({metric['draws']} draws)" if metric.get("draws", 1) > 1 else ""


#: A class with fewer real flows than this gets a fidelity number too noisy to read alone.
MIN_REAL_FLOWS = 10

#: How :meth:`FidelityReport.compute` treats a real class the synthetic set lacks.
MISSING_CLASS_MODES = ("skip", "worst")


@dataclass
class FidelityReport:
    """Metric results of one synthetic set. ``metrics[name] = {"direction", "range", "value",
    "per_class"}``; ``value`` is the macro average over the compared classes. ``info`` holds the
    counts (``class_counts``: per class, real and synthetic flows), the classes left out
    (``real_only``, ``synthetic_only``) and the compared classes with fewer than
    :data:`MIN_REAL_FLOWS` real flows (``few_real_flows``)."""

    name: str
    metrics: dict[str, dict] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @classmethod
    def compute(cls, real: FlowSet, synthetic: FlowSet, *, name: str = "synthetic",
                metrics: Sequence[Metric] | None = None, train: FlowSet | None = None,
                info: dict | None = None, missing_classes: str = "skip") -> FidelityReport:
        """Compute every metric. ``train`` (the generator's real training flows, all of them: a
        copy of any training flow counts), when given, is the reference of the metrics with
        ``reference == "train"`` (leakage, novelty) instead of ``real``.

        Classes: the report covers the real classes the synthetic set also has. A real class the
        synthetic set lacks is left out of every macro mean and named in ``info["real_only"]``
        (``missing_classes="skip"``), or scored as the metric's worst value (``"worst"``: for
        comparing generators, where not producing a class is a failure). Synthetic classes the
        real part lacks are named in ``info["synthetic_only"]``."""
        if missing_classes not in MISSING_CLASS_MODES:
            raise ConfigError(f"missing_classes must be one of {MISSING_CLASS_MODES}, got {missing_classes!r}")
        labelled = real.labels is not None and synthetic.labels is not None
        base: dict = {"n_real": len(real), "n_synthetic": len(synthetic)}
        if train is not None:
            base["n_train"] = len(train)
        keep = None
        if labelled:
            real_counts, syn_counts = real.class_counts(), synthetic.class_counts()
            shared = sorted(set(real_counts) & set(syn_counts))
            real_only = sorted(set(real_counts) - set(syn_counts))
            if not shared and missing_classes == "skip":
                raise InputFormatError(f"no class in common: the real flows have {', '.join(sorted(real_counts))}; "
                                       f"the synthetic ones {', '.join(sorted(syn_counts)) or 'none'}")
            keep = set(shared) if missing_classes == "skip" else set(real_counts)
            base.update(
                class_counts={c: {"real": int(real_counts.get(c, 0)), "synthetic": int(syn_counts.get(c, 0))}
                              for c in sorted(set(real_counts) | set(syn_counts))},
                real_only=real_only, synthetic_only=sorted(set(syn_counts) - set(real_counts)),
                few_real_flows=[c for c in sorted(keep) if real_counts[c] < MIN_REAL_FLOWS],
                missing_classes=missing_classes)
        elif real.labels is not None:
            keep = set(real.classes)
        out = {}
        for m in (default_metrics(real) if metrics is None else metrics):
            ref = train if (train is not None and m.reference == "train") else real
            per = m.compute_breakdown(ref, synthetic)
            if keep is not None and set(per) != {"__all__"}:
                per = {c: v for c, v in per.items() if c in keep}
            out[m.name] = {**m.describe(), "value": float(sum(per.values()) / len(per)), "per_class": per}
        return cls(name=name, metrics=out, info={**base, **(info or {})})

    @classmethod
    def mean(cls, reports: Sequence[FidelityReport]) -> FidelityReport:
        """One report of several synthetic draws scored against the same real flows: each metric's
        ``value`` and per-class values are the means over the draws, ``value_sd`` the spread of
        ``value`` and ``draws`` their number; ``info`` is the first draw's plus ``draws``."""
        first = reports[0]
        out = {}
        for k, m in first.metrics.items():
            vals = np.array([r.metrics[k]["value"] for r in reports], dtype=float)
            per = {c: float(np.mean([r.metrics[k]["per_class"][c] for r in reports])) for c in m["per_class"]}
            out[k] = {**m, "value": float(np.mean(vals)), "value_sd": float(np.std(vals)), "draws": len(reports),
                      "per_class": per}
        return cls(name=first.name, metrics=out, info={**first.info, "draws": len(reports)})

    def warnings(self) -> list[str]:
        """One line per thing a reader of the macro numbers must know: classes left out, classes
        scored as missing, classes with too few real flows for a stable number."""
        lines = []
        counts = self.info.get("class_counts", {})
        if self.info.get("real_only"):
            how = ("scored as missing (worst value)" if self.info.get("missing_classes") == "worst"
                   else "left out of the macro means")
            lines.append(f"{len(self.info['real_only'])} real classes have no synthetic flows, {how}: "
                         + ", ".join(self.info["real_only"]))
        if self.info.get("synthetic_only"):
            lines.append("synthetic classes without real flows (not scored): " + ", ".join(self.info["synthetic_only"]))
        if self.info.get("few_real_flows"):
            lines.append(f"fewer than {MIN_REAL_FLOWS} real flows, numbers unstable: " + ", ".join(
                f"{c} ({counts.get(c, {}).get('real', '?')})" for c in self.info["few_real_flows"]))
        return lines

    def values(self) -> dict[str, float]:
        return {k: v["value"] for k, v in self.metrics.items()}

    def scores(self) -> dict[str, float]:
        """Bigger-is-better versions on [0, 1]: ``1 - v`` (lower is better) or ``v``."""
        out = {}
        for k, v in self.metrics.items():
            lo, hi = v["range"]
            x = (v["value"] - lo) / (hi - lo)
            out[k] = 1.0 - x if v["direction"] == "lower" else x
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "info": self.info, "metrics": self.metrics}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with atomic_path(path) as tmp:
                Path(tmp).write_text(text)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> FidelityReport:
        return cls(name=d["name"], metrics=d["metrics"], info=d.get("info", {}))

    def to_markdown(self, *, per_class: bool = True) -> str:
        lines = [f"### {self.name}", "", "| metric | direction | range | macro value |", "|---|---|---|---|"]
        for k, v in self.metrics.items():
            lines.append(f"| {k} | {v['direction']} is better | [{v['range'][0]:g}, {v['range'][1]:g}] "
                         f"| {_cell(v['value'])}{_sd(v)} |")
        notes = self.warnings()
        if notes:
            lines += [""] + [f"> {line}" for line in notes]
        if per_class and self.metrics:
            names = list(self.metrics)
            classes = list(next(iter(self.metrics.values()))["per_class"])
            counts = self.info.get("class_counts", {})
            few = set(self.info.get("few_real_flows", []))
            head = ["class", *(["real flows", "synthetic flows"] if counts else []), *names]
            lines += ["", "| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
            for c in classes:
                n = [str(counts[c]["real"]) + (" (few)" if c in few else ""), str(counts[c]["synthetic"])] \
                    if c in counts else (["-", "-"] if counts else [])
                cells = [_cell(self.metrics[m]['per_class'].get(c, float('nan'))) for m in names]
                lines.append(f"| {c} | " + " | ".join(n + cells) + " |")
        return "\n".join(lines)


def comparison_markdown(reports: Sequence[FidelityReport]) -> str:
    """One row per report, one column per metric (macro values)."""
    if not reports:
        return ""
    names = list(reports[0].metrics)
    arrows = {n: ("↓" if reports[0].metrics[n]["direction"] == "lower" else "↑") for n in names}
    lines = ["| generator | " + " | ".join(f"{n} {arrows[n]}" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for r in reports:
        lines.append(f"| {r.name} | " + " | ".join(_cell(r.metrics[n]["value"]) if n in r.metrics else "n/a"
                                                   for n in names) + " |")
    return "\n".join(lines)


def augmentation_markdown(results: dict) -> str:
    """Markdown table: one row per method, one column per fraction (macro F1 mean +- std)."""
    fr = results["fractions"]
    head = "| method | " + " | ".join(f"{100 * f:g}%" for f in fr) + " |"
    lines = [head, "|---|" + "---|" * len(fr)]
    for m, r in results["methods"].items():
        cells = [f"{a:.3f} +- {s:.3f}" for a, s in zip(r["mean"], r["std"], strict=True)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("| (kept real flows) | " + " | ".join(f"{k:g}" for k in results["kept_flows"]) + " |")
    return "\n".join(lines)


def write_evaluation(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """report.json, report.md, radar.png, tstr.png, augmentation.png under ``out_dir``."""
    from trafficgen.evaluation.plots import augmentation_plot, bar_plot, radar_plot
    from trafficgen.evaluation.utility import tstr_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports = [FidelityReport.from_dict(d) for d in results["fidelity"]]
    files = {"json": out / "report.json", "md": out / "report.md"}
    if reports:
        files["radar"] = radar_plot({r.name: r.scores() for r in reports if not r.info.get("timing_only")},
                                    out / "radar.png")
    t = results["tstr"]
    files["tstr"] = bar_plot({k: v["macro_f1_mean"] for k, v in t.items()},
                             [v["macro_f1_std"] for v in t.values()], out / "tstr.png",
                             ylabel="macro F1 on held-out real", title="TSTR (train-on-real = upper bound)")
    files["augmentation"] = augmentation_plot(results["augmentation"], out / "augmentation.png")
    sp = results["split"]
    md = ["# trafficgen evaluation", "",
          f"Split: {sp['n_train']} training / {sp['n_test']} test real flows, {len(sp['classes'])} classes "
          f"(test_size={sp['test_size']}, split_seed={sp['split_seed']}).", "", f"> {sp['note']}", ""]
    unk = {k: v for k, v in results["unknown_classes"].items() if v}
    if unk:
        md += ["Classes a generator does not know (not sampled; see each report's notes for how they were "
               "scored):", ""]
        md += [f"- {k}: {', '.join(v)}" for k, v in unk.items()] + [""]
    md += ["## Fidelity and privacy (macro over classes; vs held-out real, leakage vs training part)", "",
           comparison_markdown(reports), "", "![radar](radar.png)", ""]
    md += [r.to_markdown() + "\n" for r in reports]
    md += ["## Utility: TSTR (random forest, fixed-length features)", "", tstr_markdown(t), "",
           "![tstr](tstr.png)", "",
           "## Augmentation in low-data regimes (macro F1 on held-out real)", "",
           augmentation_markdown(results["augmentation"]), "", "![augmentation](augmentation.png)", ""]
    with atomic_path(files["json"]) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=2))
    with atomic_path(files["md"]) as tmp:
        Path(tmp).write_text("\n".join(md))
    return files
