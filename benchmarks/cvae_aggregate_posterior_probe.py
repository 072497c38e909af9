"""Issue 18 probe: does the CVAE sample more useful flows from its aggregate posterior than from
its prior? (validation split only, no default changed)

    OMP_NUM_THREADS=1 python benchmarks/cvae_aggregate_posterior_probe.py DATASET [SEED ...] >> rows.jsonl

The split of ``benchmarks/cvae_tune.py`` (the lightweight_ntg training part split again, 25 %
validation, seed 1; the test part is never read). The CVAE at its defaults (``random_state`` SEED)
is fitted on the inner training part. Its latents are then drawn two ways, the decoder and every
sampling option unchanged (:meth:`CVAEGenerator._decode_latents`):

* ``prior``: ``z ~ N(0, I)``, what ``sample`` does;
* ``aggregate``: the aggregate posterior ``q(z | c) = mean_i q(z | x_i, c)`` over the inner training
  flows of class c (pick a training flow of the class at random, draw from its posterior): no
  latent region the encoder never used (the "prior hole", e.g. Ghosh et al. 2020, Bauer & Mnih
  2019), at the price of staying closer to the training flows.

Per way, one JSON line: the four fidelity JSDs against the validation part, TSTR (random forest,
100 trees) of ``CVAE_TUNE_TSTR_SEEDS`` (default 3) synthetic training sets the size of the inner
training part (the first at seed 2, as cvae_tune.py), and leakage / novelty against the inner
training part.
"""
from __future__ import annotations

import json
import sys

import numpy as np
from cvae_tune import scores, split, tstr_seeds


class AggregatePosterior:
    """``sample(n, cls, random_state, **kw)`` of a fitted CVAE with latents from its aggregate posterior."""

    def __init__(self, gen, flows):
        import torch

        self.gen = gen
        tokens, n_pk = gen._tokens(flows.truncate(gen.max_packets_))
        y = gen._class_index(flows.labels)
        keep = n_pk > 0
        with torch.inference_mode():
            mu, logvar = gen.model_.encode(torch.from_numpy(tokens[keep]), torch.from_numpy(n_pk[keep]),
                                           torch.from_numpy(y[keep]))
        self.mu, self.sd, self.y = mu, (0.5 * logvar).exp(), y[keep]  # (n, Z), (n, Z), (n,)

    def sample(self, n, *, cls=None, random_state=None, temperature=None, z_temperature=None, support=None):
        import torch

        gen = self.gen
        rng = np.random.default_rng(random_state)
        names = gen._resolve_classes(int(n), cls, rng)
        y = gen._class_index(names)  # (n,)
        pick = np.empty(len(y), dtype=np.int64)
        for c in np.unique(y):  # a training flow of the requested class, at random
            rows = np.flatnonzero(y == c)
            pick[rows] = rng.choice(np.flatnonzero(self.y == c), size=len(rows))
        tgen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        t_z = float(gen.z_temperature if z_temperature is None else z_temperature)
        z = self.mu[pick] + self.sd[pick] * torch.randn(self.mu[pick].shape, generator=tgen) * t_z  # (n, Z)
        m = gen.model_
        support = gen.support if support is None else support
        allowed = m.class_vocab if support == "class" else m.class_vocab.any(0, keepdim=True).expand_as(m.class_vocab)
        with torch.inference_mode():
            lengths, n_packets = gen._decode_latents(z, torch.from_numpy(y), tgen, float(
                gen.temperature if temperature is None else temperature), allowed)
        from trafficgen.data.flowset import FlowSet

        return FlowSet(lengths=lengths.astype(np.int32), n_packets=n_packets.astype(np.int32), labels=names)


def privacy(syn, fit_train) -> dict:
    from trafficgen.evaluation.privacy import Leakage, Novelty

    return {"leakage": round(float(Leakage().compute(fit_train, syn)), 4),
            "novelty": round(float(Novelty().compute(fit_train, syn)), 4)}


def main() -> None:
    import torch

    from trafficgen.generators.cvae import CVAEGenerator

    torch.set_num_threads(1)
    ds, seeds = sys.argv[1], [int(s) for s in sys.argv[2:]] or [0]
    fit_train, val = split(ds)
    for seed in seeds:
        gen = CVAEGenerator(random_state=seed, progress=False).fit(fit_train)
        for way, sampler in (("prior", gen), ("aggregate", AggregatePosterior(gen, fit_train))):
            syn_train = sampler.sample(len(fit_train), cls=fit_train.labels.tolist(), random_state=2)
            s = scores(sampler.sample(len(val), cls=val.labels.tolist(), random_state=1), syn_train, fit_train, val)
            print(json.dumps({"dataset": ds, "seed": seed, "latent": way, **s, **privacy(syn_train, fit_train),
                              **tstr_seeds(sampler, fit_train, val, {}, s["tstr"])}), flush=True)


if __name__ == "__main__":
    main()
