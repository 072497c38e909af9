"""Per-class validation NLL (bits per flow) on the cvae_tune split: saved CVAEs (ELBO, 8 posterior
draws, as cvae_tune's ``val_elbo_bits_per_flow``) against the order-2 Markov chain, small classes
(< 30 inner-training flows) vs the rest.

    OMP_NUM_THREADS=1 python benchmarks/results/cvae_2026-12-03/per_class_nll.py DATASET SAVED_MODEL_DIR...
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cvae_tune import split  # noqa: E402

SMALL = 30


def main() -> None:
    import torch

    from trafficgen.generators.cvae import CVAEGenerator
    from trafficgen.generators.markov import MarkovGenerator

    torch.set_num_threads(1)
    ds = sys.argv[1]
    fit_train, val = split(ds)
    counts = fit_train.class_counts()
    labels = val.labels.astype(str)
    small = np.array([counts.get(c, 0) < SMALL for c in labels])
    models = [("markov", MarkovGenerator(order=2).fit(fit_train))]
    models += [(Path(p).name, CVAEGenerator.from_pretrained(p)) for p in sys.argv[2:]]
    for name, gen in models:
        kw = {"n_samples": 8} if name != "markov" else {}
        bits = -gen.log_likelihood(val, **kw) / math.log(2)  # (n,)
        per = {c: float(bits[labels == c].mean()) for c in sorted(set(labels))}
        print(json.dumps({"dataset": ds, "model": name, "bits_per_flow": round(float(bits.mean()), 3),
                          "small_flows_bits": round(float(bits[small].mean()), 3),
                          "other_flows_bits": round(float(bits[~small].mean()), 3),
                          "small_class_mean_bits": round(float(np.mean([v for c, v in per.items() if counts.get(c, 0) < SMALL])), 3),
                          "other_class_mean_bits": round(float(np.mean([v for c, v in per.items() if counts.get(c, 0) >= SMALL])), 3)}),
              flush=True)


if __name__ == "__main__":
    main()
