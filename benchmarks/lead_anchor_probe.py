"""LEAD's linear anchor on the VALIDATION part only: pooled blend against the per-OD blend with
ridge shrinkage towards it, every strength of ``RIDGE_GRID``, as RMSE / persistence per horizon.

    python benchmarks/lead_anchor_probe.py [--datasets abilene,geant] [-o OUT.json]

The recipe's chronological 70/15/15 split, t_in and horizons; the anchor is fitted on the training
part and scored on every validation origin whose history and target lie inside the validation part
(the origins :meth:`LinearAnchor.select_ridge` chooses on). The test part is never read.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def probe_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every LEAD anchor probe takes (the recipe's data sets, t_in, horizons, -o)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--datasets", default="abilene,geant")
    ap.add_argument("--t-in", type=int, default=24)
    ap.add_argument("--horizons", default="1,10,20")
    ap.add_argument("-o", "--out", type=Path, default=None)
    return ap


def train_val(ds: str):
    """The recipe's chronological 70/15/15 split of data set ``ds`` without its test part: (period
    in matrices per day, train + val values (T, N, N) float64, len(train), len(val))."""
    import numpy as np

    from trafficgen.data.windows import chronological_split
    from trafficgen.generators.tm.lead.anchor import default_period
    from trafficgen.recipes.lead import _load

    series = _load(ds)
    train, val, _test = chronological_split(series, (0.7, 0.15, 0.15))
    tv = np.concatenate([np.asarray(train.values, float), np.asarray(val.values, float)])
    return default_period(series.interval_s), tv, len(train), len(val)


def main(argv=None) -> int:
    from trafficgen.data.windows import chronological_split
    from trafficgen.generators.tm.lead.anchor import RIDGE_GRID, LinearAnchor
    from trafficgen.recipes.lead import _load

    args = probe_parser(__doc__.splitlines()[0]).parse_args(argv)
    horizons = [int(h) for h in args.horizons.split(",")]
    out = {}
    for ds in args.datasets.split(","):
        train, val, _test = chronological_split(_load(ds), (0.7, 0.15, 0.15))
        anchor = LinearAnchor(t_in=args.t_in, horizons=horizons).fit(train.values)
        sel = anchor.select_ridge(val.values, RIDGE_GRID)
        ratios = [[r / p for r in row] for row, p in zip(sel["val_rmse"], sel["val_rmse_persistence"], strict=True)]
        out[ds] = {**sel, "val_rmse_vs_persistence": ratios}
        print(f"{ds}: {sel['n_origins']} validation origins (h=1); RMSE / persistence on validation")
        print("  ridge    " + "  ".join(f"h={h:<5d}" for h in horizons))
        for j, g in enumerate(sel["grid"]):
            print(f"  {g:<8g} " + "  ".join(f"{ratios[k][j]:.4f} " for k in range(len(horizons))))
        print(f"  chosen: {sel['ridge']}")
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
