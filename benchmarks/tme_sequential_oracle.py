"""How much could a sequential estimator gain, and what does feeding back its own estimates give?
A diagnostic for issue 21 (sequential DDPM-TME), training-free, KL projection throughout.

    python benchmarks/tme_sequential_oracle.py abilene|geant

On the validation split (last 25 % of the training matrices, mean over the rest) and on the
recipe's test part (mean over all training matrices), TRE mean of the projection of:
the training mean (the rival); the previous estimate / a running mean of the earlier estimates
(:func:`~trafficgen.estimation.sequential.sequential_kl_estimate`); and, as *oracles* that read the
true matrices (not estimators, only upper bounds on what a prior could bring): the previous true
matrix and the mean of the ``w`` previous true matrices. Nothing here chooses a setting.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    from trafficgen.estimation.classic import kl_projection
    from trafficgen.estimation.sequential import sequential_kl_estimate
    from trafficgen.evaluation.tm.estimation_metrics import tre
    from trafficgen.recipes.ddpm_tme import _load_timed

    name = (argv or sys.argv[1:] or ["abilene"])[0]
    train, X, A, _, _ = _load_timed(name, {})
    x_tr = train.flat
    n_fit = int(round(0.75 * len(x_tr)))
    for split, (xf, xn) in {"validation": (x_tr[:n_fit], x_tr[n_fit:]), "test": (x_tr, X)}.items():
        Y = xn @ A
        score = lambda est: float(np.nanmean(tre(xn, est)))  # noqa: B023, E731
        print(f"{name} {split}: {len(xf)} prior matrices, {len(xn)} scored", flush=True)
        print(f"  training mean, projected                     {score(kl_projection(np.tile(xf.mean(0), (len(xn), 1)), Y, A, iters=20)):.4f}")
        for beta in (0.0, 0.5, 0.9, 0.99):
            print(f"  running mean of earlier estimates, beta {beta:<4g} {score(sequential_kl_estimate(Y, A, xf.mean(0), beta=beta)):.4f}")
        full = np.vstack([xf, xn])
        print(f"  ORACLE previous true matrix, projected       {score(kl_projection(full[len(xf) - 1:-1], Y, A, iters=20)):.4f}")
        for w in (12, 48, 288):
            trailing = np.stack([full[len(xf) + i - w:len(xf) + i].mean(0) for i in range(len(xn))])
            print(f"  ORACLE mean of the {w:>3} previous true matrices {score(kl_projection(trailing, Y, A, iters=20)):.4f}")
        print(f"  ORACLE mean of the scored period itself      {score(kl_projection(np.tile(xn.mean(0), (len(xn), 1)), Y, A, iters=20)):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
