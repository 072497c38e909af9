"""Per-step linear interpolation of LLaMA and Markov-2: validation NLL for a lambda grid.

    python benchmarks/results/chain_mix_2026-12-03/probe_global_weight.py DATASET CAP PACKETS [KWARGS_JSON] [TAG]

The probe run before `chain_mix` was built (one global weight, the default LLaMA of 2026-12-02
fitted on the token_class_bias fitting part; the fitted model is cached in /tmp/probe/).
"""
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from trafficgen.generators.llama import LlamaGenerator
from trafficgen.generators.markov import MarkovGenerator
from trafficgen.recipes.lightweight_ntg import _load
from trafficgen.representations.tokenizer import EOS_ID, PAD_ID

warnings.simplefilter("ignore")
torch.set_num_threads(1)

ds, cap, packets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kw = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
tag = sys.argv[5] if len(sys.argv) > 5 else "default"
flows = _load(ds, {"max_packets": packets, "max_flows_per_class": cap or None})
train, _ = flows.train_test_split(0.3, random_state=0)
fit, val = train.train_test_split(0.3, random_state=1)
mk = MarkovGenerator(order=2, timing=False).fit(fit)
save = Path(f"/tmp/probe/{ds}_{packets}_{tag}")
if save.exists():
    lm = LlamaGenerator.from_pretrained(save)
else:
    t0 = time.time()
    lm = LlamaGenerator(**{"random_state": 0, "progress": False, **kw}).fit(fit)
    print("fit s", round(time.time() - t0), flush=True)
    lm.save_pretrained(save)

def lm_terms(gen, flows):
    width = gen.max_packets_
    ids, _ = gen.tokenizer_.encode(flows, width, clip=True)
    outputs, fp = gen.tokenizer_.output_ids, gen.tokenizer_.first_positive_output
    ci = getattr(gen, "class_input_", None)
    ci = None if ci is None else torch.from_numpy(ci)
    with torch.inference_mode():
        x = torch.from_numpy(ids)
        cv = None if ci is None else ci[x[:, 0] - gen.tokenizer_.first_class_id]
        h = gen._class_hidden(gen.model_, x[:, :-1], cv)
        logits = gen.model_.lm_head(h).float()[..., outputs]
        logits[:, 0, :fp] = -torch.inf
        logp = torch.log_softmax(logits, -1)
        tgt = x[:, 1:]
        valid = tgt != PAD_ID
        valid[:, width] = False
        term = logp.gather(-1, (tgt - EOS_ID).clamp_min(0)[..., None])[..., 0]
    rows, pos = np.nonzero(valid.numpy())
    return ids, rows, pos, term.numpy()[rows, pos]

ids, rows, pos, lp_lm = lm_terms(lm, val)
ids2, _ = mk.tokenizer_.encode(val, mk.max_packets_, clip=True)
r2, cls_ids, ctx, tok, pos2 = mk._events(ids2)
assert (r2 == rows).all() and (pos2 == pos).all()
p = mk._interpolated(cls_ids, ctx, tok)
first = pos2 == 0
p[first] = mk.first_step_[cls_ids[first], tok[first]]
lp_mk = np.log(p)
n = len(val)


def b(lp):
    return -lp.sum() / n / np.log(2)



print(ds, packets, tag, "val flows", n, "LLaMA", round(b(lp_lm), 3), "markov", round(b(lp_mk), 3))
for lam in [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]:
    mix = np.logaddexp(np.log(lam) + lp_lm, np.log(1 - lam) + lp_mk)
    print(f"  lambda_lm {lam}: {b(mix):.3f} bits/flow", flush=True)
# per-position view
for lo, hi in [(0, 1), (1, 3), (3, 8), (8, 40)]:
    m = (pos >= lo) & (pos < hi)
    print(f"  pos {lo}-{hi}: LLaMA {-lp_lm[m].sum()/n/np.log(2):.3f} markov {-lp_mk[m].sum()/n/np.log(2):.3f}")
