"""Emulate 'the end-of-flow decision from the chain' (v = 1) on a saved default LLaMA: the LM never
ends a flow by itself (its <EOS> logit masked), a flow ends when the chain's draw is <EOS>, otherwise
the length is the chain's draw with probability w, else the LM's. Scratch; validation only."""
import sys, json, warnings
import numpy as np
warnings.simplefilter("ignore")
sys.path.insert(0, "/work/main/benchmarks")
import torch; torch.set_num_threads(1)
import trafficgen.generators.causal_lm as clm
import trafficgen.generators.chain_mix as cm
from trafficgen.representations.tokenizer import EOS_ID
from token_sampling_tune import score
from trafficgen.recipes.lightweight_ntg import _load
from trafficgen.generators.llama import LlamaGenerator

ds, cap, load = sys.argv[1], int(sys.argv[2]), sys.argv[3]
flows = _load(ds, {"max_packets": 32, "max_flows_per_class": cap or None})
train, _ = flows.train_test_split(0.3, random_state=0)
fit, val = train.train_test_split(0.3, random_state=1)
gen = LlamaGenerator.from_pretrained(load) if load != "-" else LlamaGenerator(random_state=0, progress=False).fit(fit)
base = score(gen, {}, fit, val, 1000)
print("default       ", json.dumps(base))

orig_sfl = clm.sample_from_logits
def masked(logits, *a, **k):
    logits = logits.clone(); logits[:, 0] = -torch.inf  # column 0 = <EOS>
    return orig_sfl(logits, *a, **k)
orig_step = cm._ChainDecodeState.mix_step
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
    take = (u[0, rows] < self.mix.weights[bucket]) | (proposal == EOS_ID)
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
clm.sample_from_logits = masked
cm._ChainDecodeState.mix_step = mix_step
emul = score(gen, {}, fit, val, 1000)
print("stop from chain", json.dumps(emul))
