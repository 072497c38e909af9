"""How much the recorded run's TSTR moves between synthetic draws of one fitted model (measured
after the recorded run; it chose nothing: the defaults were fixed on the validation split before).

    OMP_NUM_THREADS=1 python benchmarks/results/cvae_2026-12-02b/tstr_draw_noise.py DATASET [KWARGS...]

The ``lightweight_ntg`` split of the ``ntg_cvae`` recipe (test 0.3, seed 0; nDPI 200/class or
CICDOH20 whole, 32 packets). Fits SMOTE, Markov order 2 and the CVAE once per KWARGS (JSON; ``{}`` = the defaults,
``random_state=0`` as in the recipe), then for synthetic training sets drawn with the recipe's seed
and five more, TSTR macro F1 (random forest, 100 trees, seeds 0 and 1 as in the recipe) on the test
part. Prints one JSON line per model.
"""
from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    import torch

    from trafficgen.evaluation.utility import tstr
    from trafficgen.experiments.run_evaluation import sample_like
    from trafficgen.generators.cvae import CVAEGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.generators.smote import SmoteGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    torch.set_num_threads(1)
    ds = sys.argv[1]
    cfg = {"max_packets": 32, "max_flows_per_class": {"ndpi": 200, "cicdoh20": None}}
    train, test = _load(ds, cfg).train_test_split(0.3, random_state=0)
    # the recipe's order (cvae, smote, fast_retransmit, markov, ...) gives the draw seeds 2000 + index
    models = [("smote", 2001, SmoteGenerator()), ("markov", 2003, MarkovGenerator(order=2))]
    models += [(f"cvae {kw}", 2000, CVAEGenerator(**{"random_state": 0, "progress": False, **json.loads(kw)}))
               for kw in (sys.argv[2:] or ["{}"])]
    for name, recipe_seed, gen in models:
        gen.fit(train)
        f1 = []
        for seed in (recipe_seed, 5001, 5002, 5003, 5004, 5005):
            syn, _ = sample_like(gen, train, random_state=seed)
            f1.append(tstr({name: syn}, train, test, seeds=2, n_estimators=100)[name]["macro_f1_mean"])
        print(json.dumps({"dataset": ds, "model": name, "recipe_draw": round(f1[0], 4), "draws": [round(v, 4) for v in f1],
                          "mean": round(float(np.mean(f1)), 4), "sd": round(float(np.std(f1)), 4)}), flush=True)


if __name__ == "__main__":
    main()
