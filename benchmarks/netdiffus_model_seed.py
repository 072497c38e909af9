"""How far the recorded NetDiffus TSTR moves with the model's own seed (measured after the recorded
run; it chooses nothing).

    OMP_NUM_THREADS=2 python benchmarks/netdiffus_model_seed.py DATASET SEED [SEED ...] >> rows.jsonl

The ``ntg_netdiffus`` recipe's split and configuration (test 0.3, seed 0; nDPI 200/class or CICDOH20
whole, 32 packets; the recipe's ``generators.netdiffus`` parameters), but NetDiffus fitted with
``random_state=SEED`` (the recipe always fits with its split seed, 0). Scored as the recipe scores:
3 synthetic draws with the recipe's draw seeds (``run_evaluation.score_draws``), TSTR with forest
seeds 0 and 1. Prints one JSON line per model seed: TSTR of each draw, their mean, the four JSDs,
the fit time.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml


def main() -> None:
    from trafficgen.experiments.run_evaluation import score_draws
    from trafficgen.generators.netdiffus import NetDiffusGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    ds, seeds = sys.argv[1], [int(s) for s in sys.argv[2:]]
    recipe = yaml.safe_load((Path(__file__).parent / "recipes" / "ntg_netdiffus.yaml").read_text())
    cfg = {"max_packets": recipe["max_packets"], "max_flows_per_class": recipe["max_flows_per_class"]}
    train, test = _load(ds, cfg).train_test_split(recipe["test_size"], random_state=recipe["seed"])
    ev = recipe["evaluation"]
    for seed in seeds:
        params = {**recipe["generators"]["netdiffus"], "random_state": seed, "progress": False}
        if os.environ.get("NETDIFFUS_MODEL_SEED_SMOKE"):  # a few steps: checks the script, not the model
            params["max_steps"] = 3
        gen = NetDiffusGenerator(**params)
        t0 = time.perf_counter()
        gen.fit(train)
        fit_s = time.perf_counter() - t0
        rep, res, _ = score_draws(gen, "netdiffus", train, test, draws=int(ev["draws"]), seeds=list(range(ev["seeds"])),
                                  n_packets=recipe["max_packets"], n_estimators=int(ev["n_estimators"]))
        print(json.dumps({"dataset": ds, "model_seed": seed, "fit_s": round(fit_s, 1),
                          "tstr": round(res["macro_f1_mean"], 4),
                          "tstr_draw_means": [round(v, 4) for v in res.get("draw_means", [])],
                          "per_class_f1": {c: round(v, 4) for c, v in res["per_class_f1"].items()},
                          "jsd": {k: round(v, 4) for k, v in rep.values().items()}}), flush=True)


if __name__ == "__main__":
    main()
