"""Do link loads of neighbouring intervals help estimate a traffic matrix? A training-free probe
for issue 21 (DDPM-TME on Abilene stays at the projected training mean's TRE).

    python benchmarks/tme_window_probe.py [abilene|geant]

The ``ridge_prior`` rival of the ddpm_tme recipe (ridge from ``log1p(y / mean y)`` to
``log1p(x / mean x)``, then the recipe's KL projection onto the observed link loads), with the
link loads of intervals ``t - w .. t + w`` (or ``t - w .. t``: past only) as features. The penalty
is chosen on the chronologically last 25 % of the training matrices (validation TRE mean), then
the model is refitted on all of them and scored on the recipe's test matrices (TRE mean). If a
window carried information a single snapshot lacks, its test TRE would fall below w = 0's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALPHAS = (1.0, 10.0, 100.0, 1000.0)
WINDOWS = (0, 1, 2, 4, 8)


def windowed(Y: np.ndarray, w: int, past_only: bool) -> np.ndarray:
    """(T, L) -> (T, L * (w + 1)) or (T, L * (2w + 1)): the loads at each offset, clamped at the ends."""
    offsets = range(-w, 1) if past_only else range(-w, w + 1)
    T = len(Y)
    return np.concatenate([Y[np.clip(np.arange(T) + o, 0, T - 1)] for o in offsets], axis=1)


def tre_mean(x_fit, x_new, A, w, alpha, past_only) -> float:
    from sklearn.linear_model import Ridge

    from trafficgen.evaluation.tm.estimation_metrics import tre
    from trafficgen.generators.tm.ddpm_tme.estimate import refine_to_link_loads

    y_fit, y_new = x_fit @ A, x_new @ A
    ybar = np.maximum(y_fit.mean(0), 1e-300)
    s = np.maximum(x_fit.mean(0), 1e-300)
    model = Ridge(alpha=alpha).fit(windowed(np.log1p(y_fit / ybar), w, past_only), np.log1p(x_fit / s))
    prior = np.expm1(np.clip(model.predict(windowed(np.log1p(np.clip(y_new, 0, None) / ybar), w, past_only)),
                             0, None)) * s
    est = refine_to_link_loads(prior, y_new, A, projection="kl", project_iters=3)
    return float(np.nanmean(tre(x_new, est)))


def projected_mean_tre(x_fit, x_new, A) -> float:
    """The rival every prior must beat: the training mean pushed through the same KL projection."""
    from trafficgen.evaluation.tm.estimation_metrics import tre
    from trafficgen.generators.tm.ddpm_tme.estimate import refine_to_link_loads

    prior = np.broadcast_to(x_fit.mean(0), x_new.shape)
    est = refine_to_link_loads(prior, x_new @ A, A, projection="kl", project_iters=3)
    return float(np.nanmean(tre(x_new, est)))


def tomogravity_tre(x_new, A) -> float:
    from trafficgen.estimation.classic import tomogravity_estimate
    from trafficgen.evaluation.tm.estimation_metrics import tre

    return float(np.nanmean(tre(x_new, tomogravity_estimate(x_new @ A, A))))


def main(argv=None) -> None:
    from trafficgen.recipes.ddpm_tme import _load_timed

    name = (argv or sys.argv[1:] or ["abilene"])[0]
    train, X, A, _, _ = _load_timed(name, {})
    x_tr = train.flat
    n_fit = int(0.75 * len(x_tr))
    print(f"{name}: {len(x_tr)} training matrices ({n_fit} fit / {len(x_tr) - n_fit} validation), {len(X)} test")
    print(f"  rivals (test TRE): training mean + the same projection {projected_mean_tre(x_tr, X, A):.4f}, "
          f"tomogravity {tomogravity_tre(X, A):.4f}")
    for past_only in (False, True):
        for w in WINDOWS:
            if past_only and w == 0:
                continue
            val = {a: tre_mean(x_tr[:n_fit], x_tr[n_fit:], A, w, a, past_only) for a in ALPHAS}
            best = min(val, key=val.get)
            test = tre_mean(x_tr, X, A, w, best, past_only)
            span = f"t-{w}..t" if past_only else f"t-{w}..t+{w}"
            print(f"  window {span:9s} validation TRE {val[best]:.4f} (alpha {best:g})  test TRE {test:.4f}", flush=True)


if __name__ == "__main__":
    main()
