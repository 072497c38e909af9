"""Where NetDiffus loses information: the GASF inverse under noise, the sampled images'
diagonals, and how much of the sampled flows' error comes from the image model vs the inverse.

    # 1. round trip of real flows through GASF + Gaussian pixel noise (no model needed)
    python benchmarks/netdiffus_diagnosis.py roundtrip --dataset ndpi --out rt_ndpi.json
    # 2 + 3. a fitted model's samples: diagonals vs the real ones, and the error decomposition
    python benchmarks/netdiffus_diagnosis.py samples --dataset ndpi --model DIR [--sampler ddim --steps 10] \
        --out samples_ndpi.json
    # the recipe's headline table (TSTR, JSDs) from its results.json
    python benchmarks/netdiffus_diagnosis.py table --results runs/ntg_netdiffus/results.json --out table.md

Data: the lightweight_ntg split (``trafficgen.recipes.lightweight_ntg._load``: nDPI 200 per class,
CICDOH20 whole, 32 packets, stratified 70/30 with seed 0). Every score is against the real test
part; the sets compared have the test part's class counts (real: a disjoint sample of the
training part, :func:`~trafficgen.experiments.run_evaluation.real_floor_sample`).

``roundtrip``: the training part's padded images (the generator's ``_images``: ``length_transform``
linear / log / quantile, float64) + i.i.d. ``N(0, sigma^2)`` on every pixel, clipped to [-1, 1]
(the samplers clip their image estimate), decoded by the generator's decoder (``first_gap`` /
``step`` end detection). ``sigma`` runs over a grid and over the noise levels the samplers end
at: the last DDIM / DPM-Solver++ step of ``S`` trailing steps starts from ``x_t`` at
``t = 1000 / S - 1``, whose noise is ``sigma_t = sqrt((1 - abar_t) / abar_t)`` in image units
(``S`` = 50, 20, 10). Reported: packet count exact, packets with the exact length / direction,
median relative length error, flows decoded exactly, and TSTR macro F1 (random forest on the
decoded flows, tested on the real test part) plus the packet-count / length JSDs. ``--packets 10``
repeats it for the seed's 10-packet images (10x10, padded to 16).

``samples``: a fitted model samples the test part's labels. Diagonal: histogram JSD of the
sampled vs the real diagonal values, the share of diagonal values between the padding level and
the smallest packet (where no real image has any), the share of flows whose packets are not a
prefix (holes). Off-manifold residual: RMS over the pixels of ``G - GASF(inverse(G))`` (an
exact GASF scores 0; a real image plus noise ``sigma`` scores about ``sigma``): read against the
round trip's to get the noise ``sigma_eff`` at which a real image is as far from the GASF
manifold as the samples are. Decomposition (TSTR F1 and the JSDs; ``M0``: real flows, ``M1``:
the same real flows through the inverse at ``sigma_eff``, ``M2``: the samples): the share of the
gap ``M2 - M0`` due to the inverse mapping and snapping is ``(M1 - M0) / (M2 - M0)``, the rest
is the image model placing its images on the wrong flows. Decoding the samples with
``snap="range"`` (plain rounding) and ``first_gap`` vs ``step`` shows the snapping's and the end
detection's own share.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from trafficgen._io import atomic_path


def recipe_split(dataset: str, packets: int = 32):
    from trafficgen.recipes.lightweight_ntg import _load

    flows = _load(dataset, {"max_packets": 32, "max_flows_per_class": {"ndpi": 200, "cicdoh20": None}})
    train, test = flows.train_test_split(0.3, random_state=0)
    return train.truncate(packets), test.truncate(packets)


def sampler_end_sigmas(steps=(50, 20, 10)) -> dict[str, float]:
    """Noise (image units) of ``x_t`` at the last step of ``S`` trailing steps, cosine schedule."""
    from diffusers import DDPMScheduler

    from trafficgen.generators.netdiffus import SCHEDULER_CONFIG

    abar = DDPMScheduler(**SCHEDULER_CONFIG).alphas_cumprod.double().numpy()
    out = {}
    for s in steps:
        t = 1000 // s - 1
        out[f"last step of {s} (t={t})"] = float(np.sqrt((1 - abar[t]) / abar[t]))
    t = 1000 // 10 * 2 - 1
    out[f"second-last step of 10 (t={t})"] = float(np.sqrt((1 - abar[t]) / abar[t]))
    return out


def bare_generator(train, *, length_transform: str, end_detection: str, packets: int):
    """A NetDiffusGenerator with only its mapper fitted (enough to encode and decode)."""
    from trafficgen.generators.netdiffus import NetDiffusGenerator, padded_size
    from trafficgen.representations.gasf import GasfImageMapper
    from trafficgen.representations.length_tables import class_length_tables, class_position_counts

    gen = NetDiffusGenerator(preset="fast", max_packets=packets, length_transform=length_transform,
                             end_detection=end_detection)
    gen.mapper_ = GasfImageMapper(image_size=packets).fit(train)
    gen.max_packets_, gen.image_size_ = packets, padded_size(packets, 3)
    gen.classes_ = train.classes
    gen.class_lengths_, gen.class_counts_ = class_length_tables(train, train.classes)
    gen.class_position_counts_ = class_position_counts(train, gen.class_lengths_, packets)
    gen.class_count_position_counts_ = class_position_counts(train, gen.class_lengths_, packets, by_count=True)
    return gen


def flow_errors(real, dec) -> dict:
    """Per-packet / per-flow agreement of decoded flows with the real ones they came from."""
    both = real.valid_mask & dec.valid_mask  # (n, N)
    lr, ld = real.lengths[both].astype(float), dec.lengths[both].astype(float)
    same = (real.n_packets == dec.n_packets) & np.all(real.lengths == dec.lengths, axis=1)
    return {"n_packets_exact": float(np.mean(real.n_packets == dec.n_packets)),
            "n_packets_mean_error": float(np.mean(dec.n_packets - real.n_packets)),
            "length_exact": float(np.mean(np.abs(lr) == np.abs(ld))),
            "direction_exact": float(np.mean(np.sign(lr) == np.sign(ld))),
            "relative_length_error_median": float(np.median(np.abs(np.abs(ld) - np.abs(lr)) / np.abs(lr))),
            "flows_exact": float(np.mean(same))}


def set_scores(flows, train_like, test) -> dict:
    """TSTR macro F1 (one forest seed) and the packet-count / length JSDs of ``flows`` vs ``test``."""
    from trafficgen.evaluation.fidelity import LengthJSD, PacketCountJSD
    from trafficgen.evaluation.utility import fit_score

    return {"tstr_f1": fit_score(flows, test, seed=0, n_packets=test.max_packets)[0],
            "packet_count_jsd": float(PacketCountJSD().compute(test, flows)),
            "length_jsd": float(LengthJSD().compute(test, flows))}


def offmanifold_rms(gen, images) -> np.ndarray:
    """(n,) RMS over the pixels of ``G - GASF(inverse(G))`` of (n, 1, P, P) images (first N packets)."""
    from trafficgen.representations.gasf import gasf_from_scaled, scaled_from_gasf

    k = gen.max_packets_
    g = np.clip(np.asarray(images, dtype=np.float64)[:, 0, :k, :k], -1, 1)  # (n, N, N)
    x = scaled_from_gasf(g)  # (n, N)
    return np.sqrt(np.mean((g - gasf_from_scaled(x)) ** 2, axis=(1, 2)))


def noisy(images: np.ndarray, sigma: float, rng) -> np.ndarray:
    return np.clip(images + sigma * rng.standard_normal(images.shape), -1.0, 1.0)


def roundtrip(args) -> dict:
    from trafficgen.experiments.run_evaluation import real_floor_sample

    train, test = recipe_split(args.dataset, args.packets)
    real = real_floor_sample(train, test, random_state=0)  # the test part's class counts
    sigmas = sampler_end_sigmas()
    grid = sorted(set([0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3] + [round(s, 5) for s in sigmas.values()]))
    if args.sigmas:
        grid = [float(s) for s in args.sigmas.split(",")]
    result = {"mode": "roundtrip", "dataset": args.dataset, "packets": args.packets, "n_flows": len(real),
              "sampler_end_sigmas": sigmas, "floor": set_scores(real, train, test), "rows": []}
    for transform in args.transforms.split(","):
        gen = bare_generator(train, length_transform=transform, end_detection="step", packets=args.packets)
        clean = gen._images(real, dtype=np.float64)  # (n, 1, P, P)
        for sigma in grid:
            img = noisy(clean, sigma, np.random.default_rng(0))
            for end, snap in [(e, s) for e in args.ends.split(",") for s in args.snaps.split(",")]:
                dec = gen.decode_images(img, labels=real.labels, end_detection=end, snap=snap)
                row = {"length_transform": transform, "sigma": sigma, "end_detection": end, "snap": snap,
                       **flow_errors(real, dec), **set_scores(dec, train, test),
                       "offmanifold_rms": float(np.mean(offmanifold_rms(gen, img)))}
                result["rows"].append(row)
                print(json.dumps(row), flush=True)
    return result


def diagonal_stats(gen, images) -> dict:
    """Diagonal values of (n, 1, P, P) images (first N packets) and the presence pattern."""
    k = gen.max_packets_
    d = np.clip(np.diagonal(np.asarray(images, dtype=np.float64)[:, 0, :k, :k], axis1=1, axis2=2), -1, 1)
    v = np.sqrt((d + 1) / 2)  # |v| per position (n, N)
    present = v >= 0.25
    n_first = np.where(present.all(1), k, np.argmin(present, 1))
    return {"values": d, "ambiguous_share": float(np.mean((v > 0.05) & (v < 0.5))),
            "holes_share": float(np.mean(present.sum(1) > n_first)),
            "mean_per_position": d.mean(0)[:8].round(3).tolist()}


def hist_jsd(a: np.ndarray, b: np.ndarray, bins: int = 40) -> float:
    from trafficgen.evaluation.fidelity import jsd

    edges = np.linspace(-1, 1, bins + 1)
    return float(jsd(np.histogram(a, edges)[0].astype(float), np.histogram(b, edges)[0].astype(float)))


def samples(args) -> dict:
    from trafficgen.experiments.run_evaluation import real_floor_sample
    from trafficgen.generators.netdiffus import NetDiffusGenerator

    train, test = recipe_split(args.dataset)
    real = real_floor_sample(train, test, random_state=0)
    gen = NetDiffusGenerator.from_pretrained(args.model)
    index = {c: i for i, c in enumerate(gen.classes_)}
    t0 = time.perf_counter()
    if args.images and os.path.exists(args.images):  # a cached run of the same sampling
        images, sample_s = np.load(args.images)["images"], None
    else:
        images = gen.sample_images(np.array([index[c] for c in test.labels]), random_state=1, sampler=args.sampler,
                                   num_inference_steps=args.steps, guidance_scale=args.guidance)
        sample_s = time.perf_counter() - t0
        if args.images:
            np.savez_compressed(args.images, images=images)
    clean = gen._images(real, dtype=np.float64)
    ds, dr = diagonal_stats(gen, images), diagonal_stats(gen, clean)
    real_mask = real.valid_mask
    result = {"mode": "samples", "dataset": args.dataset, "model": args.model, "params": gen.get_params(),
              "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance,
              "sample_seconds_1thread": sample_s, "n_flows": len(test),
              "diagonal": {"hist_jsd_all": hist_jsd(dr["values"], ds["values"]),
                           "hist_jsd_packets_only": hist_jsd(dr["values"][real_mask], ds["values"][
                               gen.decode_images(images, end_detection="step").valid_mask]),
                           "ambiguous_share": {"real": dr["ambiguous_share"], "sampled": ds["ambiguous_share"]},
                           "holes_share": {"real": dr["holes_share"], "sampled": ds["holes_share"]},
                           "mean_first8": {"real": dr["mean_per_position"], "sampled": ds["mean_per_position"]}}}
    r_s = float(np.mean(offmanifold_rms(gen, images)))
    grid = [0.001, 0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    r_grid = [float(np.mean(offmanifold_rms(gen, noisy(clean, s, np.random.default_rng(0))))) for s in grid]
    sigma_eff = float(np.interp(r_s, r_grid, grid))
    result["offmanifold"] = {"sampled_rms": r_s, "real_plus_noise_rms": dict(zip(map(str, grid), r_grid, strict=True)),
                             "sigma_eff": sigma_eff}
    m0 = set_scores(real, train, test)
    m1_flows = gen.decode_images(noisy(clean, sigma_eff, np.random.default_rng(0)), labels=real.labels)
    m1 = set_scores(m1_flows, train, test)
    dec = {}
    for end in ("first_gap", "step"):
        for snap in ("train", "range"):
            gen.mapper_.snap = snap
            dec[f"{end}/{snap}"] = set_scores(gen.decode_images(images, labels=test.labels, end_detection=end),
                                              train, test)
    gen.mapper_.snap = "train"
    m2 = dec[f"{gen.end_detection}/train"]
    share = {}
    for k in m0:
        gap = m2[k] - m0[k]
        share[k] = {"inverse_share": float((m1[k] - m0[k]) / gap) if abs(gap) > 1e-9 else None,
                    "image_model_share": float((m2[k] - m1[k]) / gap) if abs(gap) > 1e-9 else None}
    result["decomposition"] = {"M0_real": m0, "M1_real_through_inverse_at_sigma_eff": m1,
                               "M1_flow_errors": flow_errors(real, m1_flows), "M2_samples": m2,
                               "samples_by_decoder": dec, "shares": share}
    print(json.dumps({k: v for k, v in result.items() if k != "params"}, indent=1), flush=True)
    return result


TABLE_ROWS = ("netdiffus", "smote", "fast_retransmit", "markov", "copy", "independent", "real_vs_real (floor)")
TABLE_METRICS = ("packet_count_jsd", "length_jsd", "bigram_jsd", "markov_jsd", "leakage")


def roundtrip_markdown(res: dict, sigmas=(0.0, 0.01, 0.03, 0.04184, 0.08976, 0.16944, 0.3)) -> str:
    """Markdown table of a roundtrip run at a few noise levels (both end detections)."""
    cols = ("n_packets_exact", "length_exact", "direction_exact", "relative_length_error_median", "tstr_f1",
            "packet_count_jsd", "length_jsd")
    md = [f"{res['dataset']}, {res['packets']} packets, {res['n_flows']} real flows (the test part's class counts); "
          f"floor (no noise, real flows): TSTR {res['floor']['tstr_f1']:.3f}, packet-count JSD "
          f"{res['floor']['packet_count_jsd']:.3f}, length JSD {res['floor']['length_jsd']:.3f}. Sampler end "
          "noise levels: " + ", ".join(f"{k} {v:.3f}" for k, v in res["sampler_end_sigmas"].items()), "",
          "| map | sigma | end, snap | " + " | ".join(cols) + " |", "|---|---:|---|" + "---:|" * len(cols)]
    for r in res["rows"]:
        if any(abs(r["sigma"] - s) < 1e-4 for s in sigmas):
            md.append(f"| {r['length_transform']} | {r['sigma']:.3f} | {r['end_detection']} "
                      f"{r.get('snap', 'train')} | "
                      + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    return "\n".join(md)


def table(args) -> dict:
    """Markdown: per data set, TSTR macro F1 and the fidelity JSDs of the recipe's rows (or the
    table of a roundtrip JSON)."""
    res = json.loads(open(args.results).read())
    if res.get("mode") == "roundtrip":
        text = roundtrip_markdown(res)
        print(text)
        return {"markdown": text}
    md = []
    for name, d in res["datasets"].items():
        md += [f"{name}: {d['n_flows']} flows, {len(d['classes'])} classes ({d['n_train']} train / "
               f"{d['n_test']} test); train-on-real TSTR {d['train_on_real']:.3f}", "",
               "| generator | TSTR macro F1 | " + " | ".join(TABLE_METRICS) + " |",
               "|---|---:|" + "---:|" * len(TABLE_METRICS)]
        for row in TABLE_ROWS:
            fid = d["fidelity"].get(row, {})
            t = d["tstr"].get(row)
            md.append(f"| {row} | {'' if t is None else f'{t:.3f}'} | "
                      + " | ".join("" if fid.get(m) is None else f"{fid[m]:.3f}" for m in TABLE_METRICS) + " |")
        if "netdiffus" in d["tstr"] and "smote" in d["tstr"]:
            md += ["", f"NetDiffus TSTR - SMOTE TSTR: {d['tstr']['netdiffus'] - d['tstr']['smote']:+.3f}"]
        eff = [r for r in d.get("efficiency", []) if r.get("model") == "netdiffus"]
        if eff:
            md += ["", "NetDiffus efficiency row: " + json.dumps({k: v for k, v in eff[0].items()
                                                                if isinstance(v, (int, float, str))})]
        md.append("")
    text = "\n".join(md)
    print(text)
    return {"markdown": text}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("roundtrip", "samples", "table"))
    ap.add_argument("--results", default=None, help="table: a recipe's results.json")
    ap.add_argument("--dataset", choices=("ndpi", "cicdoh20"), default="ndpi")
    ap.add_argument("--packets", type=int, default=32, help="roundtrip: packets per image (32 or 10)")
    ap.add_argument("--model", default=None, help="samples: a saved NetDiffus model")
    ap.add_argument("--sampler", default=None, help="samples: ddim | dpmsolver++ | unipc (default: the model's)")
    ap.add_argument("--steps", type=int, default=None, help="samples: sampler steps (default: the model's)")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--images", default=None, help="samples: .npz cache of the sampled images (read if present)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sigmas", default=None, help="roundtrip: comma-separated noise levels (default: a grid + "
                    "the samplers' end levels)")
    ap.add_argument("--transforms", default="linear,log,quantile", help="roundtrip: length maps")
    ap.add_argument("--ends", default="first_gap,step", help="roundtrip: end detections")
    ap.add_argument("--snaps", default="train", help="roundtrip: snapping (train, class)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = list(os.getloadavg())
    if args.mode == "table":
        result = table(args)
        with atomic_path(args.out) as tmp:
            tmp.write_text(result["markdown"])
        return result
    result = roundtrip(args) if args.mode == "roundtrip" else samples(args)
    result["load_before"], result["load_after"] = load, list(os.getloadavg())
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
