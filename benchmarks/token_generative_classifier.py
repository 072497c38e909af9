"""How much does a token model know about the class? Its generative classifier on validation data.

    python benchmarks/token_generative_classifier.py DATASET ['LLAMA_KWARGS_JSON']

The lightweight_ntg recipe's training part (stratified 70/30, seed 0; nDPI 200/class) is split
again (30 % validation, seed 1), as in ``token_sampling_tune.py``. Markov order 2 and LLaMA (the
defaults, or the given keyword arguments) are fitted on the fitting part; each validation flow is
scored under every class, ``log p(x | c)``. Prints one JSON line per model: macro F1 of
``argmax_c log p(x | c)`` (the generative classifier), held-out bits per flow under the flow's own
class, and ``class_info_bits``: the mean of ``log2 p(x | c) - log2 sum_c' p(c') p(x | c')``, the
information about the class the model puts into a flow (one torch thread).
"""
from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np


def relabel(flows, c):
    from trafficgen.data.flowset import FlowSet

    return FlowSet(lengths=flows.lengths, n_packets=flows.n_packets, labels=[c] * len(flows))


def generative_classifier(gen, name: str, fit, val, kw: dict) -> dict:
    from sklearn.metrics import f1_score

    classes = sorted(set(fit.labels.tolist()))
    ll = np.stack([gen.log_likelihood(relabel(val, c)) for c in classes], 1)  # (n, C) nats
    pred = np.array(classes)[ll.argmax(1)]
    own = ll[np.arange(len(val)), [classes.index(c) for c in val.labels]]  # (n,)
    prior = np.bincount([classes.index(c) for c in fit.labels], minlength=len(classes)) / len(fit)
    mixture = np.logaddexp.reduce(ll + np.log(prior)[None], axis=1)  # (n,) log p(x)
    return {"model": name, "kw": kw, "gen_clf_macro_f1": round(float(f1_score(val.labels, pred, average="macro")), 4),
            "bits_per_flow": round(float(-own.mean() / np.log(2)), 3),
            "class_info_bits": round(float((own - mixture).mean() / np.log(2)), 3)}


def main() -> None:
    import torch

    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    ds = sys.argv[1]
    kw = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    flows = _load(ds, {"max_packets": 32, "max_flows_per_class": 200 if ds == "ndpi" else None})
    train, _test = flows.train_test_split(0.3, random_state=0)
    fit, val = train.train_test_split(0.3, random_state=1)
    print(json.dumps(generative_classifier(MarkovGenerator(order=2, timing=False).fit(fit), "markov2", fit, val, {})),
          flush=True)
    t0 = time.time()
    llama = LlamaGenerator(random_state=0, progress=False, **kw).fit(fit)
    print(json.dumps(generative_classifier(llama, f"llama (fit {time.time() - t0:.0f} s)", fit, val, kw)), flush=True)


if __name__ == "__main__":
    main()
