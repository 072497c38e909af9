"""LEAD's per-OD anchor under drift, on the TRAINING + VALIDATION parts only (rolling origin).

    python benchmarks/lead_anchor_drift_probe.py [--datasets abilene,geant] [-o OUT.json]

The recipe's chronological 70/15/15 split; the test part is never read. Inside train+val, fold f
(f = 1, 2) mimics the recipe one period earlier: V = len(val) matrices,

    fold 1: fit = train[:-V],  choose = train[-V:],  score = val
    fold 2: fit = train[:-2V], choose = train[-2V:-V], score = train[-V:]

The ridge strength is chosen per horizon on the "choose" block (origins whose target lies inside
it, history reaching back: ``select_ridge(..., history=...)``); the "score" block is scored on every origin
whose target lies inside it (history may reach back, as the recipe's test origins do). Schemes:

* ``current``: fitted on the fit block only (what LEAD does today: train, chosen on val);
* ``refit``: the same chosen ridge, coefficients refitted on fit + choose (train + val at test time);
* feature variants (``--features``): ``mean`` (last, mean of 4, mean of t_in: today's), ``median``
  (last, median of 4, median of t_in), ``ewm`` (last, exponentially weighted means with half-lives
  2 and 8), ``season`` (x[o+h-P] - x[o-P], P = one day), ``seasonlvl`` (x[o+h-P]), combined with
  ``+`` (e.g. ``mean+season``), each under current and refit;
* ``halflife`` H: recency-weighted least squares (weight 2^(-age/H), age in matrices from the end
  of the fit block), H chosen with the ridge on the choose block from ``--halflives``.

Prints RMSE / persistence on the score block (series units: proportional to Mbit/s).
"""
from __future__ import annotations

import json

import numpy as np

RIDGE_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, float("inf"))


def ewm_mean(window: np.ndarray, halflife: float) -> np.ndarray:
    """(B, T, N, N) -> (B, N, N) exponentially weighted mean, the newest weight 1."""
    t = window.shape[1]
    w = 0.5 ** (np.arange(t)[::-1] / float(halflife))
    return np.einsum("btij,t->bij", window, w / w.sum())


#: the seasonal period in matrices (one day), set per data set by main()
PERIOD = [96]


def features(values, origins, t_in, kind, h=1):
    idx = origins[:, None] + np.arange(-t_in + 1, 1)[None]
    win = values[idx]  # (B, T, N, N)
    last = win[:, -1]
    cols = [last]
    for part in kind.split("+"):
        if part == "mean":
            cols += [win[:, -4:].mean(1), win.mean(1)]
        elif part == "median":
            cols += [np.median(win[:, -4:], 1), np.median(win, 1)]
        elif part == "ewm":
            cols += [ewm_mean(win, 2.0), ewm_mean(win, 8.0)]
        elif part == "season":  # same time one period earlier: x[o+h-P] - x[o-P] (the day's change)
            p = PERIOD[0]
            cols += [values[origins + h - p] - values[origins - p]]
        elif part == "seasonlvl":  # x[o+h-P] (level one period earlier)
            p = PERIOD[0]
            cols += [values[origins + h - p]]
        elif part == "mean1":
            cols += [win.mean(1)]
        else:
            raise ValueError(part)
    return np.stack(cols, -1)  # (B, N, N, F)


class Anchor:
    def __init__(self, t_in, horizons, kind="mean", halflife=None):
        self.t_in, self.horizons, self.kind, self.halflife = t_in, horizons, kind, halflife

    def min_o(self):
        return max(self.t_in - 1, PERIOD[0] if "season" in self.kind else 0)

    def fit(self, values):
        self.pooled, self.gram, self.rhs = [], [], []
        for h in self.horizons:
            o = np.arange(self.min_o(), len(values) - h)
            f = features(values, o, self.t_in, self.kind, h)
            y = values[o + h]
            w = np.ones(len(o)) if self.halflife is None else 0.5 ** ((o.max() - o) / float(self.halflife))
            x2 = f.reshape(len(o), -1, f.shape[-1])
            xw = x2 * np.sqrt(w)[:, None, None]
            yw = y.reshape(len(o), -1) * np.sqrt(w)[:, None]
            c, *_ = np.linalg.lstsq(xw.reshape(-1, f.shape[-1]), yw.reshape(-1), rcond=None)
            self.pooled.append(c)
            self.gram.append(np.einsum("b,bijf,bijg->ijfg", w, f, f))
            self.rhs.append(np.einsum("b,bijf,bij->ijf", w, f, y))
        return self

    def coef(self, k, ridge):
        from trafficgen.generators.tm.lead.anchor import shrunk_coefficients

        return shrunk_coefficients(self.gram[k], self.rhs[k], self.pooled[k], ridge)

    def rmse(self, values, origins, k, ridge):
        h = self.horizons[k]
        pred = np.maximum(np.einsum("bijf,ijf->bij", features(values, origins, self.t_in, self.kind, h),
                                    self.coef(k, ridge)), 0.0)
        return float(np.sqrt(np.mean((pred - values[origins + h]) ** 2)))


def pers_rmse(values, origins, h):
    return float(np.sqrt(np.mean((values[origins] - values[origins + h]) ** 2)))


def run_fold(tv, n_fit, n_choose, n_score, t_in, horizons, kind, halflives):
    """tv: train+val values; blocks [0, n_fit), [n_fit, n_fit+n_choose), [.., +n_score)."""
    fit_v = tv[:n_fit]
    upto = tv[:n_fit + n_choose + n_score]
    res = {"current": [], "refit": [], "ridge": [], "halflife": [], "persistence": []}
    best = {}
    for hl in halflives:
        a = Anchor(t_in, horizons, kind, hl).fit(fit_v)
        for k, h in enumerate(horizons):
            co = np.arange(n_fit - 1, n_fit + n_choose - h)  # targets inside the choose block
            co = co[co >= a.min_o()]
            for r in RIDGE_GRID:
                v = a.rmse(tv, co, k, r)
                if k not in best or v < best[k][0]:
                    best[k] = (v, hl, r)
    for k, h in enumerate(horizons):
        _, hl, r = best[k]
        so = np.arange(n_fit + n_choose - 1, n_fit + n_choose + n_score - h)
        so = so[so >= max(t_in - 1, PERIOD[0])]  # the same origins for every variant
        a = Anchor(t_in, horizons, kind, hl).fit(fit_v)
        b = Anchor(t_in, horizons, kind, hl).fit(tv[:n_fit + n_choose])
        p = pers_rmse(upto, so, h)
        res["current"].append(a.rmse(upto, so, k, r) / p)
        res["refit"].append(b.rmse(upto, so, k, r) / p)
        res["ridge"].append(r)
        res["halflife"].append(hl)
        res["persistence"].append(p)
    return res


def main(argv=None) -> int:
    from lead_anchor_probe import probe_parser

    from trafficgen.data.windows import chronological_split
    from trafficgen.recipes.lead import _load

    ap = probe_parser(__doc__.splitlines()[0])
    ap.add_argument("--features", default="mean,median,ewm,mean+ewm")
    ap.add_argument("--halflives", default="none,100,300,1000", help="'none' = unweighted; in matrices")
    args = ap.parse_args(argv)
    horizons = [int(h) for h in args.horizons.split(",")]
    hls_all = [None if s == "none" else float(s) for s in args.halflives.split(",")]
    out = {}
    for ds in args.datasets.split(","):
        series = _load(ds)
        PERIOD[0] = int(round(86400 / float(series.interval_s)))
        train, val, _test = chronological_split(series, (0.7, 0.15, 0.15))
        tv = np.concatenate([np.asarray(train.values, float), np.asarray(val.values, float)])
        nt, nv = len(train), len(val)
        folds = {1: (nt - nv, nv, nv), 2: (nt - 2 * nv, nv, nv)}
        out[ds] = {}
        for kind in args.features.split(","):
            for hl_name, hls in (("unweighted", [None]), ("halflife", hls_all)):
                for f, (a, b, c) in folds.items():
                    r = run_fold(tv, a, b, c, args.t_in, horizons, kind, hls)
                    out[ds][f"{kind}/{hl_name}/fold{f}"] = r
                    print(f"{ds} fold{f} {kind:9s} {hl_name:10s} current " + " ".join(f"{v:.3f}" for v in r["current"])
                          + "  refit " + " ".join(f"{v:.3f}" for v in r["refit"])
                          + f"  ridge {r['ridge']} hl {r['halflife']}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
