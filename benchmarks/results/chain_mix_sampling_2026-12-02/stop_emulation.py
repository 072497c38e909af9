"""Scratch emulation (validation only, not a library feature): the end-of-flow decision from the chain.

    python benchmarks/results/chain_mix_sampling_2026-12-02/stop_emulation.py DATASET CAP MODEL_DIR|-

On a default LLaMA (loaded from MODEL_DIR, saved by ``benchmarks/token_class_bias.py --save``, or
fitted with ``-``) it scores the default samples, then patches the decode loop so that the LM never
ends a flow by itself (its <EOS> logit masked), a flow ends when the chain's draw is <EOS>, and
otherwise the length is the chain's draw with the bucket's weight w, else the LM's: the stop weight
v = 1 of ``benchmarks/chain_mix_eos_probe.py``. Same split, seeds and scoring as token_class_bias.py.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np


def patched_mix_step(cm, eos_id):
    def mix_step(self, t, lm_tokens, u, alive=None, allowed=None, more_uniforms=None):
        chain, k = self.mix.chain, self.mix.chain.n_uniforms
        rows = np.arange(len(lm_tokens)) if alive is None else np.flatnonzero(alive)
        cls_ids, history = self.cls_ids[rows], self.history[rows]

        def draw(idx, u_first, u_level, u_draw):
            if t == 0:
                return chain.draw_first(cls_ids[idx], u_first), None
            return chain.draw_next(cls_ids[idx], history[idx], u_level, u_draw, with_counts=True)

        proposal, counts = draw(slice(None), u[1, rows], u[1:1 + k, rows], u[1 + k:1 + 2 * k, rows])
        bucket = np.zeros(len(rows), dtype=np.int64) if t == 0 else cm.buckets(np.full(len(rows), t), counts)
        take = (u[0, rows] < self.mix.weights[bucket]) | (proposal == eos_id)  # the chain decides the end
        if allowed is not None:
            first_output = chain.tokenizer_.output_ids.start
            for _ in range(cm.MAX_REDRAWS):
                bad = np.flatnonzero(take & ~allowed[cls_ids, proposal - first_output])
                if not len(bad):
                    break
                extra = more_uniforms(1 + 2 * k, len(bad))
                proposal[bad] = draw(bad, extra[0], extra[1:1 + k], extra[1 + k:])[0]
            take &= allowed[cls_ids, proposal - first_output]
        out = lm_tokens.copy()
        out[rows] = np.where(take, proposal, lm_tokens[rows])
        self.history[rows] = chain.push_history(history, out[rows])
        return out

    return mix_step


def main() -> None:
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import torch
    from token_sampling_tune import score

    import trafficgen.generators.causal_lm as clm
    import trafficgen.generators.chain_mix as cm
    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.recipes.lightweight_ntg import _load
    from trafficgen.representations.tokenizer import EOS_ID

    torch.set_num_threads(1)
    ds, cap, load = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    flows = _load(ds, {"max_packets": 32, "max_flows_per_class": cap or None})
    train, _ = flows.train_test_split(0.3, random_state=0)
    fit, val = train.train_test_split(0.3, random_state=1)
    gen = LlamaGenerator.from_pretrained(load) if load != "-" else LlamaGenerator(random_state=0, progress=False).fit(fit)
    print("default        ", json.dumps(score(gen, {}, fit, val, 1000)))
    original = clm.sample_from_logits

    def without_eos(logits, *args, **kwargs):
        logits = logits.clone()
        logits[:, 0] = -torch.inf  # output column 0 is <EOS>
        return original(logits, *args, **kwargs)

    clm.sample_from_logits = without_eos
    cm._ChainDecodeState.mix_step = patched_mix_step(cm, EOS_ID)
    print("stop from chain", json.dumps(score(gen, {}, fit, val, 1000)))


if __name__ == "__main__":
    main()
