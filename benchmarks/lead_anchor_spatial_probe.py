"""Does LEAD's anchor gain from other OD pairs or from a nonlinear model? Rolling origin inside train + validation.

    python benchmarks/lead_anchor_spatial_probe.py [--datasets abilene,geant] [-o OUT.json]

The folds of ``benchmarks/lead_anchor_rolling.py`` (fit on "train", choose on "val", score "test",
one and two validation periods before the recipe's own validation part; the test part is never
read). Every row is scored as RMSE / persistence at h = 1 / 10 / 20 on the fold's "test" origins.

* ``per-OD ridge + EXTRA``: LEAD's anchor (``features="mean+season"``, per-OD ridge chosen per horizon
  on "val" with history, refitted on train + val) with one more column per OD pair:
  ``grav`` (the OD's gravity share R_i C_j / T of the last matrix, times its mean ratio to it over
  the window), ``lowrank3`` (the last matrix at SVD rank 3), ``node`` (the mean of the last 4 scaled
  by the change of its origin and destination totals), ``ewm`` (an exponentially weighted mean,
  half-life 2 steps), ``season7`` (the change over the same h steps averaged over up to 7 earlier
  days), ``med3`` / ``med5`` (the median of the last 3 / 5 matrices: persistence robust to one-step spikes).
* ``pooled HGB``: scikit-learn's HistGradientBoostingRegressor (50 trees) over every OD pair and
  origin, on scale-free features (last, mean of 4, the seasonal change, the two matrices before the
  last, the window's sd, each over the window mean; log window mean; time of day), predicting
  ``(x[o+h] - x[o]) / window mean`` with squared-error weights ``window mean^2`` (so the loss is
  in the series' units, like RMSE).
* ``blend``: ``w * HGB + (1 - w) * per-OD ridge``, ``w`` in {0, .25, .5, .75, 1} chosen per horizon
  on "val" (both parts fitted on "train" for the choice, then refitted on train + val).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

EXTRAS = ("grav", "lowrank3", "node", "ewm", "season7", "med3", "med5")
BLEND = (0.0, 0.25, 0.5, 0.75, 1.0)


def extra_column(values, origins, h, period, t_in, name):
    """(B, N, N) one more anchor feature (see the module docstring)."""
    from trafficgen.data.windows import window_index

    win = values[window_index(origins, t_in)]  # (B, T_in, N, N)
    last = win[:, -1]
    if name == "grav":
        g = win.sum(-1, keepdims=True) * win.sum(-2, keepdims=True) / np.maximum(win.sum((-1, -2), keepdims=True), 1e-12)
        return win.sum(1) / np.maximum(g.sum(1), 1e-12) * g[:, -1]
    if name == "lowrank3":
        u, s, vt = np.linalg.svd(last, full_matrices=False)
        s[:, 3:] = 0
        return np.einsum("bik,bk,bkj->bij", u, s, vt)
    if name == "node":
        m4 = win[:, -4:].mean(1)
        r = last.sum(-1, keepdims=True) / np.maximum(m4.sum(-1, keepdims=True), 1e-12)
        c = last.sum(-2, keepdims=True) / np.maximum(m4.sum(-2, keepdims=True), 1e-12)
        return m4 * np.sqrt(r * c)
    if name == "ewm":
        w = 0.5 ** (np.arange(t_in)[::-1] / 2.0)
        return np.einsum("t,btij->bij", w / w.sum(), win)
    if name in ("med3", "med5"):  # robust persistence: the median of the last 3 / 5 matrices
        return np.median(win[:, -int(name[3:]):], axis=1)
    if name == "season7":
        acc, cnt = np.zeros_like(last), np.zeros(len(origins))
        for d in range(1, 8):
            ok = origins - d * period >= 0
            o = np.where(ok, origins, d * period)
            acc += np.where(ok[:, None, None], values[o + h - d * period] - values[o - d * period], 0.0)
            cnt += ok
        return acc / np.maximum(cnt, 1)[:, None, None]
    raise ValueError(name)


class RidgeAnchor:
    """LEAD's per-OD ridge anchor (mean+season) with optional extra columns, same shrinkage and ridge grid."""

    def __init__(self, t_in, horizons, period, extra=None):
        self.t_in, self.horizons, self.period, self.extra = t_in, horizons, period, extra

    def features(self, values, origins, h):
        from trafficgen.generators.tm.lead.anchor import history_features

        x = history_features(values, origins, self.t_in, features="mean+season", horizon=h, period=self.period)
        if self.extra is None:
            return x
        return np.concatenate([x, extra_column(values, origins, h, self.period, self.t_in, self.extra)[..., None]], -1)

    def fit(self, values):
        self.stats = []
        for h in self.horizons:
            o = np.arange(max(self.t_in - 1, self.period), len(values) - h)
            x, y = self.features(values, o, h), values[o + h]
            pooled, *_ = np.linalg.lstsq(x.reshape(-1, x.shape[-1]), y.reshape(-1), rcond=None)
            self.stats.append((np.einsum("bijf,bijg->ijfg", x, x), np.einsum("bijf,bij->ijf", x, y), pooled))
        return self

    def coef(self, k, ridge):
        from trafficgen.generators.tm.lead.anchor import shrunk_coefficients

        return shrunk_coefficients(*self.stats[k], ridge)

    def predict(self, series, start, h, coef):
        o = np.arange(start, len(series) - h)
        return np.maximum(np.einsum("bijf,ijf->bij", self.features(series, o, h), coef), 0.0).reshape(-1)


def hgb_design(values, origins, h, period, t_in):
    """(rows, 8) scale-free features, (rows,) scale, (rows,) last value."""
    from trafficgen.data.windows import window_index
    from trafficgen.generators.tm.lead.anchor import history_features

    base = history_features(values, origins, t_in, features="mean+season", horizon=h, period=period)
    win = values[window_index(origins, t_in)]
    s = base[..., 2] + 1e-3 * values.mean() + 1e-12
    phase = np.broadcast_to((origins % period / period)[:, None, None], s.shape)
    cols = [base[..., 0] / s, base[..., 1] / s, base[..., 3] / s, win[:, -2] / s, win[:, -3] / s, win.std(1) / s,
            np.log(s), phase]
    return np.stack(cols, -1).reshape(-1, len(cols)), s.reshape(-1), base[..., 0].reshape(-1)


def fit_hgb(values, h, period, t_in):
    from sklearn.ensemble import HistGradientBoostingRegressor

    o = np.arange(max(t_in - 1, period), len(values) - h)
    x, s, last = hgb_design(values, o, h, period, t_in)
    model = HistGradientBoostingRegressor(max_iter=50, learning_rate=0.05, min_samples_leaf=200, l2_regularization=1.0,
                                          random_state=0)
    return model.fit(x, (values[o + h].reshape(-1) - last) / s, sample_weight=s ** 2)


def predict_hgb(model, series, start, h, period, t_in):
    x, s, last = hgb_design(series, np.arange(start, len(series) - h), h, period, t_in)
    return np.maximum(last + s * model.predict(x), 0.0)


def main(argv=None) -> int:
    from lead_anchor_probe import probe_parser, train_val

    from trafficgen.generators.tm.lead.anchor import RIDGE_GRID

    args = probe_parser(__doc__.splitlines()[0]).parse_args(argv)
    horizons, t_in = [int(h) for h in args.horizons.split(",")], args.t_in
    out = {}
    for ds in args.datasets.split(","):
        period, tv, nt, nv = train_val(ds)
        out[ds] = {}
        for f, n_fit in ((1, nt - nv), (2, nt - 2 * nv)):
            fold_val, upto = tv[:n_fit + nv], tv[:n_fit + 2 * nv]

            def rmse(pred, h, start, series_=upto):
                o = np.arange(start, len(series_) - h)
                t = series_[o + h].reshape(-1)
                return np.sqrt(np.mean((pred - t) ** 2)) / np.sqrt(np.mean((series_[o].reshape(-1) - t) ** 2))

            rows, ridge_preds = {}, {}
            for extra in (None, *EXTRAS):
                anchor = RidgeAnchor(t_in, horizons, period, extra).fit(tv[:n_fit])
                ridges = [min(RIDGE_GRID, key=lambda r, k=k, h=h: rmse(anchor.predict(fold_val, n_fit - 1, h, anchor.coef(k, r)),
                                                                       h, n_fit - 1, fold_val))
                          for k, h in enumerate(horizons)]
                val_preds = [anchor.predict(fold_val, n_fit - 1, h, anchor.coef(k, ridges[k])) for k, h in enumerate(horizons)]
                anchor.fit(fold_val)
                preds = [anchor.predict(upto, n_fit + nv - 1, h, anchor.coef(k, ridges[k])) for k, h in enumerate(horizons)]
                name = "per-OD ridge (LEAD's anchor)" if extra is None else f"per-OD ridge + {extra}"
                rows[name] = [float(rmse(p, h, n_fit + nv - 1)) for p, h in zip(preds, horizons, strict=True)]
                if extra is None:
                    ridge_preds = {"val": val_preds, "test": preds}
            hgb_test, blend, weights = [], [], []
            for k, h in enumerate(horizons):
                m = fit_hgb(tv[:n_fit], h, period, t_in)
                pv = predict_hgb(m, fold_val, n_fit - 1, h, period, t_in)
                w = min(BLEND, key=lambda w, pv=pv, k=k, h=h: rmse(w * pv + (1 - w) * ridge_preds["val"][k], h, n_fit - 1,
                                                                  fold_val))
                m = fit_hgb(fold_val, h, period, t_in)
                pt = predict_hgb(m, upto, n_fit + nv - 1, h, period, t_in)
                hgb_test.append(float(rmse(pt, h, n_fit + nv - 1)))
                blend.append(float(rmse(w * pt + (1 - w) * ridge_preds["test"][k], h, n_fit + nv - 1)))
                weights.append(w)
            rows["pooled HGB"] = hgb_test
            rows[f"blend (w chosen on val: {weights})"] = blend
            for name, r in rows.items():
                print(f"{ds} fold{f} {name:45s} " + " ".join(f"{v:.3f}" for v in r), flush=True)
            out[ds][f"fold{f}"] = rows
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
