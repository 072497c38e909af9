"""LEAD's anchor options by rolling origin inside the TRAINING + VALIDATION parts (test never read).

    python benchmarks/lead_anchor_rolling.py [--datasets abilene,geant] [-o OUT.json]

With V = len(val) matrices of the recipe's chronological 70/15/15 split, fold f repeats LEAD's
protocol (fit on "train", choose the ridge on "val", forecast "test") one and two periods of V
earlier, so that "test" is data the choice never saw:

    fold 1: train = train[:-V],  val = train[-V:],     test = val
    fold 2: train = train[:-2V], val = train[-2V:-V],  test = train[-V:]

Each configuration is :func:`~trafficgen.generators.tm.lead.anchor.fit_anchor` exactly as
:class:`~trafficgen.generators.tm.lead.forecaster.LeadForecaster` calls it (``anchor_features``,
``anchor_val_history``, ``anchor_refit``: refit on train + val at the chosen ridge) and is scored
on every origin whose target lies in "test" (history reaching back), as RMSE / persistence
(series units, proportional to Mbit/s). Seconds on 2 cores.
"""
from __future__ import annotations

import json

import numpy as np

#: (name, features, val_history, refit); the first is LEAD's anchor of lead_2026-12-02b.
CONFIGS = (
    ("12-02b (mean, val-only history, no refit)", "mean", False, False),
    ("mean, val history", "mean", True, False),
    ("mean, val history, refit", "mean", True, True),
    ("mean+season, val history", "mean+season", True, False),
    ("mean+season, val history, refit", "mean+season", True, True),
    ("lags+season, val history, refit", "lags+season", True, True),
    ("auto (per horizon), val history, refit", "auto", True, True),
)


def score(anchor, series, start, horizons):
    out = []
    for h in horizons:
        o = np.arange(start, len(series) - h)
        pred = anchor.predict(series, o, [h])[:, 0]
        truth = series[o + h]
        out.append(float(np.sqrt(np.mean((pred - truth) ** 2)) / np.sqrt(np.mean((series[o] - truth) ** 2))))
    return out


def main(argv=None) -> int:
    from lead_anchor_probe import probe_parser, train_val

    from trafficgen.generators.tm.lead.anchor_choice import fit_lead_anchor as fit_anchor

    args = probe_parser(__doc__.splitlines()[0]).parse_args(argv)
    horizons = [int(h) for h in args.horizons.split(",")]
    out = {}
    for ds in args.datasets.split(","):
        period, tv, nt, nv = train_val(ds)
        out[ds] = {"period": period, "folds": {}}
        for f, n_fit in ((1, nt - nv), (2, nt - 2 * nv)):
            tr, va, upto = tv[:n_fit], tv[n_fit:n_fit + nv], tv[:n_fit + 2 * nv]
            rows = {}
            for name, feats, hist, refit in CONFIGS:
                a = fit_anchor(tr, va, t_in=args.t_in, horizons=horizons, ridge="auto", features=feats,
                               period=period if feats != "mean" else None, history=hist)
                ridge = list(a.ridge)
                if refit:
                    a.refit(tv[:n_fit + nv])
                rows[name] = {"test_rmse_vs_persistence": score(a, upto, n_fit + nv - 1, horizons), "ridge": ridge}
                print(f"{ds} fold{f} {name:42s} " + " ".join(f"{v:.3f}" for v in rows[name]["test_rmse_vs_persistence"])
                      + f"  ridge {ridge}", flush=True)
            out[ds]["folds"][f] = rows
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
