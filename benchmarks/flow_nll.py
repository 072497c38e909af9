"""Held-out likelihood of a LLaMA configuration against the Markov references, on the
lightweight_ntg split (stratified 70/30, seed 0; nDPI capped at 200 flows per class).

    python benchmarks/flow_nll.py ndpi 32 '{"length_features": false, "epochs": 20, "patience": 3}'
    python benchmarks/flow_nll.py cicdoh20 10 '{}'        # the defaults

Prints one JSON line: held-out bits per flow and per packet of LLaMA (the given keyword arguments
over the defaults) and of Markov orders 1-3, the fit time and the validation curve. The cheap,
low-noise signal the defaults were tuned against (one torch thread).
"""
from __future__ import annotations

import json
import sys
import time
import warnings

import torch


def main() -> None:
    from trafficgen.evaluation.likelihood import likelihood_summary
    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    torch.set_num_threads(1)
    ds, width = sys.argv[1], int(sys.argv[2])
    kw = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    flows = _load(ds, {"max_packets": width, "max_flows_per_class": {"ndpi": 200, "cicdoh20": None}})
    train, test = flows.train_test_split(0.3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        markov = {k: likelihood_summary(MarkovGenerator(order=k).fit(train), test) for k in (1, 2, 3)}
        t0 = time.perf_counter()
        gen = LlamaGenerator(random_state=0, progress=False, **kw).fit(train)
        fit_s = time.perf_counter() - t0
    s = likelihood_summary(gen, test)
    print(json.dumps({"dataset": ds, "packets": width, "llama_kwargs": kw,
                      "llama_bits_per_flow": round(s["bits_per_flow"], 3),
                      "llama_bits_per_packet": round(s["bits_per_packet"], 4),
                      **{f"markov{k}_bits_per_flow": round(v["bits_per_flow"], 3) for k, v in markov.items()},
                      "fit_s": round(fit_s, 1), "steps": gen.history_.get("steps"),
                      "best_epoch": gen.history_.get("best_epoch"),
                      "val_loss": [round(v, 4) for v in gen.history_.get("val_loss", [])]}))


if __name__ == "__main__":
    main()
