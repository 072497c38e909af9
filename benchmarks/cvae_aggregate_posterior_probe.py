"""Issue 18 probe: does the CVAE sample more useful flows from its aggregate posterior than from
its prior? (validation split only, no default changed)

    OMP_NUM_THREADS=1 python benchmarks/cvae_aggregate_posterior_probe.py DATASET [SEED ...] >> rows.jsonl

The split of ``benchmarks/cvae_tune.py`` (the lightweight_ntg training part split again, 25 %
validation, seed 1; the test part is never read). The CVAE at its defaults (``random_state`` SEED)
is fitted on the inner training part. Its latents are then drawn two ways, the decoder and every
sampling option unchanged (``CVAEGenerator.sample(latent=...)``):

* ``prior``: ``z ~ N(0, I)``, the sampler before 2026-12-03b;
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

from cvae_tune import scores, split, tstr_seeds


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
        for way in ("prior", "aggregate"):
            kw = {"latent": way}
            syn_train = gen.sample(len(fit_train), cls=fit_train.labels.tolist(), random_state=2, **kw)
            s = scores(gen.sample(len(val), cls=val.labels.tolist(), random_state=1, **kw), syn_train, fit_train, val)
            print(json.dumps({"dataset": ds, "seed": seed, "latent": way, **s, **privacy(syn_train, fit_train),
                              **tstr_seeds(gen, fit_train, val, kw, s["tstr"])}), flush=True)


if __name__ == "__main__":
    main()
