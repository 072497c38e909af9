"""Per-class TSTR F1 on the cvae_tune validation split: small classes (< 30 inner-training flows) vs the rest.

    OMP_NUM_THREADS=1 python benchmarks/results/cvae_2026-12-03/per_class.py DATASET SAVED_MODEL_DIR... [markov] [smote]

Each saved CVAE (``CVAE_TUNE_SAVE`` folders of ``benchmarks/cvae_tune.py``) draws a synthetic set the
size of the inner training part with seeds 2, 3, 4 at its default sampling settings (as ``tstr_mean``
of cvae_tune); ``markov`` / ``smote`` are refitted the same way as cvae_tune's reference rows. One
JSON line per model: macro F1 (mean over the draws), the mean F1 of the small and of the other
classes, and the per-class F1 of the small ones.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cvae_tune import split  # noqa: E402

SMALL = 30


def main() -> None:
    import torch

    from trafficgen.evaluation.utility import fit_score
    from trafficgen.generators.cvae import CVAEGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.generators.smote import SmoteGenerator

    torch.set_num_threads(1)
    ds = sys.argv[1]
    fit_train, val = split(ds)
    counts = fit_train.class_counts()
    small = sorted(c for c in val.classes if counts.get(c, 0) < SMALL)
    for what in sys.argv[2:]:
        if what in ("markov", "smote"):
            gen = (MarkovGenerator(order=2) if what == "markov" else SmoteGenerator()).fit(fit_train)
        else:
            gen = CVAEGenerator.from_pretrained(what)
        per = []
        for seed in (2, 3, 4):
            syn = gen.sample(len(fit_train), cls=fit_train.labels.tolist(), random_state=seed)
            per.append(fit_score(syn, val, seed=0, n_packets=32, n_estimators=100)[1])
        mean = {c: float(np.mean([p[c] for p in per])) for c in per[0]}
        rest = [c for c in mean if c not in small]
        print(json.dumps({"dataset": ds, "model": Path(what).name, "macro_f1": round(float(np.mean(list(mean.values()))), 4),
                          "small_classes_f1": round(float(np.mean([mean[c] for c in small])), 4),
                          "other_classes_f1": round(float(np.mean([mean[c] for c in rest])), 4),
                          "n_small": len(small), "n_other": len(rest),
                          "small": {c: [counts.get(c, 0), round(mean[c], 3)] for c in small}}), flush=True)


if __name__ == "__main__":
    main()
