"""How much the per-position length tables keep under pixel noise, and the back-off share they
need (``length_transform="class_position_quantile"``, :data:`~trafficgen.representations.length_maps.POSITION_BACKOFF`).

    python benchmarks/netdiffus_position_backoff.py --dataset ndpi --backoffs 0.02,0.1,0.5 --out rows.jsonl

Real flows of the lightweight_ntg split (the training part's sample with the test part's class
counts, as in ``netdiffus_diagnosis.py roundtrip``) become GASF images through the class table
(``class_quantile``), through the class-and-position tables at each back-off and through the
class, count-bucket and position tables (``class_count_position_quantile``), get i.i.d. pixel
noise ``sigma`` (the samplers' last-step levels), and are decoded with their true packet counts
(as ``count_condition`` does) and ``snap="class"``. One JSON row per (map, back-off, sigma):
lengths and flows decoded exactly, TSTR (one forest seed) and the JSDs against the test part.
No model is trained.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from netdiffus_diagnosis import bare_generator, flow_errors, noisy, recipe_split, set_scores  # noqa: E402


def main(argv=None) -> list[dict]:
    import trafficgen.generators.netdiffus as netdiffus
    from trafficgen.experiments.run_evaluation import real_floor_sample
    from trafficgen.representations.length_maps import position_weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=("ndpi", "cicdoh20"), default="ndpi")
    ap.add_argument("--backoffs", default="0.02,0.1,0.5")
    ap.add_argument("--sigmas", default="0,0.042,0.09,0.169")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    train, test = recipe_split(args.dataset, 32)
    real = real_floor_sample(train, test, random_state=0)
    runs = ([("class_quantile", None)] + [("class_position_quantile", float(b)) for b in args.backoffs.split(",")]
            + [("class_count_position_quantile", None)])  # per count bucket too, at the default back-offs
    rows = []
    try:
        for transform, backoff in runs:
            netdiffus.position_weights = (position_weights if backoff is None else
                                          functools.partial(position_weights, backoff=backoff))
            gen = bare_generator(train, length_transform=transform, end_detection="step", packets=32)
            clean = gen._images(real, dtype=np.float64)  # (n, 1, P, P)
            for sigma in (float(s) for s in args.sigmas.split(",")):
                dec = gen.decode_images(noisy(clean, sigma, np.random.default_rng(0)), labels=real.labels,
                                        snap="class", packet_counts=real.n_packets)
                row = {"dataset": args.dataset, "length_transform": transform, "backoff": backoff, "sigma": sigma,
                       **flow_errors(real, dec), **set_scores(dec, train, test)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        netdiffus.position_weights = position_weights
    with open(args.out, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


if __name__ == "__main__":
    main()
