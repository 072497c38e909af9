"""Why does a RandomForest trained on LLaMA samples score lower TSTR than one trained on Markov samples?

    python benchmarks/small_class_tstr_probe.py [DATASET] [--seed 0] [--draws 3] [--cap 200] [--packets 32]
                                               [--classes MDNS LLMNR WeChat NetFlix] [--model-dir DIR]

Same split as ``benchmarks/token_class_bias.py`` / ``benchmarks/chain_mix_weight_probe.py``: the
lightweight_ntg training part (stratified 70/30, seed 0) is split again (stratified 70/30, seed 1)
into a fitting and a validation part; the recipe's test part is never read. LLaMA at its defaults
(``random_state=--seed``) and ``MarkovGenerator(order=2, timing=False)`` are fitted on the fitting
part; each synthetic set has the fitting part's class counts (sampling seeds 1001, 2001, ... one per
draw). The classifier is the recipe's TSTR classifier (:func:`trafficgen.evaluation.utility.make_classifier`,
100 trees, on :func:`flow_features` of ``--packets`` signed lengths), trained on a synthetic set and
scored on the validation part, over forest seeds 0 and 1 (the recipe's ``evaluation.seeds: 2``).
Every F1 below is the mean over draws x forest seeds; "small" classes have fewer than ``SMALL``
fitting flows.

Printed:

1. TSTR macro F1 per draw, and per class (fitting / validation counts, LLaMA, Markov, train on real,
   gap), sorted by gap; precision and recall, small vs large classes.
2. For the ``--classes`` and the worst classes by gap: where their validation flows are predicted
   (pooled over draws and forest seeds), which classes' validation flows are predicted as them,
   packet-count distribution (fitting / validation / LLaMA / Markov), first-packet length top 5 (of
   the first draw), share of samples that copy a fitting flow of their class exactly, share of the
   class's distinct fitting flows the samples reproduce, total-variation distance (TV) of the
   samples' first-packet and packet-count distributions to the fitting flows', and validation bits
   per flow under LLaMA and Markov.
3. What the samples are made of, small vs large classes: exact copies of a fitting flow, and where
   each sampled event (last two tokens, next token; ``<EOS>`` included) was seen in the fitting
   part: in the flow's own class, only in other classes, or nowhere; events whose next length the
   class's fitting flows never contain (outside the class support LLaMA samples with); distinct fitting flows reproduced;
   the two TVs (mean over classes). Real validation flows as reference (a smaller set, so its TVs
   carry more sampling noise).
4. Tests, each over ``--draws`` draws (the same sampling seeds as 1.):
   ``swap`` (which classes' samples carry the loss?): LLaMA samples with the small classes' samples
   taken from Markov, and Markov samples with the small classes' samples taken from LLaMA;
   ``copies x novel`` (which part of the samples?): per class, the exact copies of fitting flows of one
   generator's draw (its number and choice of copies) completed with novel flows (no exact copy) of
   either generator, taken in order from a second draw of ``POOL`` x the class counts (2 x 2 sets);
   ``first from chain`` (hypothesis: the LM part's first-packet distribution of a small class is
   mis-weighted): the fitted LLaMA instance with its chain weight at the first packet set to 1
   (``chain_mix_.weights[0] = 1``, this instance only; no default changes), so the first packet is the
   chain's draw and the rest the usual mixture; its validation bits/flow is printed beside.

``--model-dir``: save the fitted LLaMA there, or load it from there when it already exists (to
re-run the analysis without refitting). Timings are not reported (the machine is shared).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SMALL = 31  # classes with fewer fitting flows are "small" (20 of nDPI's 32 at 200/class)
RF_SEEDS = (0, 1)
POOL = 5  # oversampling of the second draw the copies x novel test takes novel flows from
MAX_LENGTH = 1500  # the tokenizer's clip: real lengths are compared clipped like the models see them
COUNT_BINS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 8), (9, 16), (17, 31), (32, 32))


def flow_keys(flows, width):
    from trafficgen.representations.features import flow_features

    X = np.clip(flow_features(flows, width), -MAX_LENGTH, MAX_LENGTH).astype(np.int64)
    return [tuple(r) for r in X]


def forest_predictions(syn, val, width):
    """[(seed, predictions on val)] of the recipe's classifier trained on ``syn``."""
    from trafficgen.evaluation.utility import make_classifier
    from trafficgen.representations.features import flow_features

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in RF_SEEDS:
            clf = make_classifier(s).fit(flow_features(syn, width), syn.labels.astype(str))
            out.append(clf.predict(flow_features(val, width)))
    return out


def scores(preds, val, classes):
    """(per-class F1, precision, recall) (C,) each, mean over the forests."""
    from sklearn.metrics import precision_recall_fscore_support

    y = val.labels.astype(str)
    p, r, f = [], [], []
    for pred in preds:
        a, b, c, _ = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
        p.append(a)
        r.append(b)
        f.append(c)
    return np.mean(f, 0), np.mean(p, 0), np.mean(r, 0)


def count_hist(flows, cls):
    n = flows.n_packets[flows.labels == cls]
    return [float(np.mean((n >= lo) & (n <= hi))) if len(n) else 0.0 for lo, hi in COUNT_BINS]


def first_top(flows, cls, k=5):
    x = np.clip(flows.lengths[flows.labels == cls, 0], None, MAX_LENGTH).tolist()
    return ", ".join(f"{v}:{c / len(x):.2f}" for v, c in Counter(x).most_common(k)) if x else "-"


def tv(a, b):
    """Total variation distance of two empirical distributions (sequences of values)."""
    ca, cb = Counter(a), Counter(b)
    na, nb = max(len(a), 1), max(len(b), 1)
    return 0.5 * sum(abs(ca[k] / na - cb[k] / nb) for k in set(ca) | set(cb))


def class_tvs(flows, fit, classes):
    """{class: (first-packet TV, packet-count TV)} of ``flows`` against the fitting flows of the class."""
    out = {}
    for c in classes:
        a, b = flows.labels == c, fit.labels == c
        out[c] = (tv(np.clip(flows.lengths[a, 0], None, MAX_LENGTH).tolist(), np.clip(fit.lengths[b, 0], None, MAX_LENGTH).tolist()),
                  tv(flows.n_packets[a].tolist(), fit.n_packets[b].tolist()))
    return out


def events(flows, width):
    """[(label, [(t-2, t-1, t) token triples])] with B padding and E the end (if not forced)."""
    out = []
    for s, lab in zip(flows.sequences(), flows.labels, strict=True):
        toks = ["B", "B"] + [int(np.clip(v, -MAX_LENGTH, MAX_LENGTH)) for v in s] + (["E"] if len(s) < width else [])
        out.append((lab, [tuple(toks[i - 2:i + 1]) for i in range(2, len(toks))]))
    return out


def provenance(flows, owners, support, width, small_of):
    """Share of events seen in the own class / only in other classes / nowhere, and of events whose
    next token is a length the class's fitting flows never contain (``new length``), small vs large."""
    cnt = {True: Counter(), False: Counter()}
    for lab, ev in events(flows, width):
        for e in ev:
            o = owners.get(e, ())
            c = cnt[small_of[lab]]
            c["own" if lab in o else ("other" if o else "none")] += 1
            c["new length"] += e[2] != "E" and e[2] not in support[lab]
    out = {}
    for g, c in cnt.items():
        tot = max(sum(c[k] for k in ("own", "other", "none")), 1)
        out["small" if g else "large"] = {k: c[k] / tot for k in ("own", "other", "none", "new length")}
    return out


def copy_novel(copies_from, novel_pool, fit_keys, counts, width):
    """Per class: the flows of ``copies_from`` that copy a fitting flow of their class, then novel flows
    of ``novel_pool`` (in order) up to the class's count (topped up with ``novel_pool``'s copies if it
    has too few novel ones); returns (flows, number topped up)."""
    from trafficgen.data.flowset import FlowSet

    def is_copy(s):
        return np.array([(lab, k) in fit_keys for lab, k in zip(s.labels, flow_keys(s, width), strict=True)])

    ca, cp = is_copy(copies_from), is_copy(novel_pool)
    parts, topped = [], 0
    for c, n in counts.items():
        copies = np.flatnonzero((copies_from.labels == c) & ca)[:n]
        novel = np.flatnonzero((novel_pool.labels == c) & ~cp)[:n - len(copies)]
        fill = np.flatnonzero((novel_pool.labels == c) & cp)[:n - len(copies) - len(novel)]
        topped += len(fill)
        parts += [copies_from[copies], novel_pool[np.sort(np.concatenate([novel, fill]).astype(np.int64))]]
    return FlowSet.concat(parts), topped


def coverage(flows, fit, fit_keys_list, width, cls):
    """Share of the distinct fitting flows of ``cls`` that ``flows`` reproduce at least once."""
    mine = {k for k, lab in zip(fit_keys_list, fit.labels, strict=True) if lab == cls}
    got = {k for k, lab in zip(flow_keys(flows, width), flows.labels, strict=True) if lab == cls}
    return len(mine & got) / max(len(mine), 1)


def swap(a, b, classes):
    """``a``'s flows, except that those of ``classes`` come from ``b``."""
    from trafficgen.data.flowset import FlowSet

    keep_a = np.flatnonzero(~np.isin(a.labels, classes))
    keep_b = np.flatnonzero(np.isin(b.labels, classes))
    return FlowSet.concat([a[keep_a], b[keep_b]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default="ndpi")
    ap.add_argument("--cap", type=int, default=200)
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="LLaMA's random_state")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--classes", nargs="*", default=["MDNS", "LLMNR", "WeChat", "NetFlix"])
    ap.add_argument("--worst", type=int, default=3, help="also detail this many worst classes by gap")
    ap.add_argument("--model-dir", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    torch.set_num_threads(1)
    flows = _load(args.dataset, {"max_packets": args.packets, "max_flows_per_class": args.cap or None})
    train, _test = flows.train_test_split(0.3, random_state=0)
    fit, val = train.train_test_split(0.3, random_state=1)
    width = args.packets
    if args.model_dir and (Path(args.model_dir) / "config.json").exists():
        llama = LlamaGenerator.from_pretrained(args.model_dir)
        print(f"loaded LLaMA from {args.model_dir}")
    else:
        llama = LlamaGenerator(random_state=args.seed, progress=False).fit(fit)
        if args.model_dir:
            llama.save_pretrained(args.model_dir)
    markov = MarkovGenerator(order=2, timing=False).fit(fit)
    gens = {"llama": llama, "markov": markov}
    classes = list(val.classes)
    fc, vc = fit.class_counts(), val.class_counts()
    small_of = {c: fc[c] < SMALL for c in fc}
    small = [c for c in classes if small_of[c]]
    is_small = np.array([small_of[c] for c in classes])
    draw_seeds = [1000 * (k + 1) + 1 for k in range(args.draws)]
    print(f"{args.dataset}: {len(fit)} fitting / {len(val)} validation flows, {len(classes)} classes, "
          f"{len(small)} small (< {SMALL} fitting flows); LLaMA seed {args.seed}, chain_mix weights "
          f"{np.round(llama.chain_mix_.weights, 2).tolist()}; draws {draw_seeds}, forest seeds {list(RF_SEEDS)}")

    # ---------------------------------------------------------------- 1. TSTR per class
    syn = {n: [g.sample(len(fit), cls=fit.labels.tolist(), random_state=s) for s in draw_seeds] for n, g in gens.items()}
    preds = {n: [forest_predictions(s, val, width) for s in sets] for n, sets in syn.items()}
    per = {n: [scores(p, val, classes) for p in ps] for n, ps in preds.items()}  # [draw] -> (f1, P, R)
    real = scores(forest_predictions(fit, val, width), val, classes)
    print("\n## 1. TSTR (macro F1 per draw; mean)")
    for n in gens:
        m = [float(f.mean()) for f, _, _ in per[n]]
        print(f"{n}: {' '.join(f'{v:.3f}' for v in m)}; mean {np.mean(m):.3f}; small classes "
              f"{np.mean([f[is_small].mean() for f, _, _ in per[n]]):.3f}, large "
              f"{np.mean([f[~is_small].mean() for f, _, _ in per[n]]):.3f}")
    print(f"train on real (fitting part): {real[0].mean():.3f}")
    f1 = {n: np.mean([f for f, _, _ in per[n]], 0) for n in gens}
    sd = {n: np.std([f for f, _, _ in per[n]], 0) for n in gens}
    gap = f1["llama"] - f1["markov"]
    print("\n| class | fit | val | llama F1 (sd over draws) | markov F1 (sd) | real | gap |\n|---|---:|---:|---:|---:|---:|---:|")
    for i in np.argsort(gap):
        print(f"| {classes[i]} | {fc[classes[i]]} | {vc[classes[i]]} | {f1['llama'][i]:.3f} ({sd['llama'][i]:.2f}) | "
              f"{f1['markov'][i]:.3f} ({sd['markov'][i]:.2f}) | {real[0][i]:.3f} | {gap[i]:+.3f} |")
    print(f"gap summed over classes / {len(classes)}: small classes {gap[is_small].sum() / len(classes):+.4f}, "
          f"large {gap[~is_small].sum() / len(classes):+.4f} (of {gap.mean():+.4f})")
    for n in gens:
        P = np.mean([p for _, p, _ in per[n]], 0)
        R = np.mean([r for _, _, r in per[n]], 0)
        print(f"{n}: small classes precision {P[is_small].mean():.3f} recall {R[is_small].mean():.3f}; "
              f"large precision {P[~is_small].mean():.3f} recall {R[~is_small].mean():.3f}")

    # ---------------------------------------------------------------- 2. detail of the worst classes
    worst = [classes[i] for i in np.argsort(gap) if classes[i] not in args.classes][:args.worst]
    detail = [c for c in args.classes if c in classes] + worst
    y = val.labels.astype(str)
    nll = {n: -g.log_likelihood(val) / np.log(2) for n, g in gens.items()}
    fit_keys_list = flow_keys(fit, width)
    fit_keys = set(zip(fit.labels, fit_keys_list, strict=True))
    print(f"\n## 2. Detail: {', '.join(detail)} (pooled over {args.draws} draws x {len(RF_SEEDS)} forests)")
    print("packet-count bins: " + " ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in COUNT_BINS))
    for c in detail:
        i = classes.index(c)
        print(f"\n### {c} (fit {fc[c]}, val {vc[c]}): F1 llama {f1['llama'][i]:.3f}, markov {f1['markov'][i]:.3f}")
        for n in gens:
            pooled = np.concatenate([p for ps in preds[n] for p in ps])
            truth = np.tile(y, args.draws * len(RF_SEEDS))
            as_ = Counter(pooled[truth == c]).most_common(5)
            tot = (truth == c).sum()
            from_ = Counter(truth[pooled == c]).most_common(5)
            tot_from = max((pooled == c).sum(), 1)
            print(f"{n}: real {c} predicted as " + ", ".join(f"{k} {v / tot:.2f}" for k, v in as_)
                  + f" | predicted {c} are " + ", ".join(f"{k} {v / tot_from:.2f}" for k, v in from_))
        rows = {"fit": [fit], "val": [val], **syn}
        for n, sets in rows.items():
            hist = np.mean([count_hist(s, c) for s in sets], 0)
            print(f"{n:6s} packets " + " ".join(f"{v:.2f}" for v in hist) + f" | first packet {first_top(sets[0], c)}")
        for n, sets in syn.items():
            cp = np.mean([np.mean([(lab, k) in fit_keys for lab, k in zip(s.labels, flow_keys(s, width), strict=True)
                                   if lab == c]) for s in sets])
            t = np.mean([class_tvs(x, fit, [c])[c] for x in sets], 0)
            cov = np.mean([coverage(x, fit, fit_keys_list, width, c) for x in sets])
            print(f"{n}: copies of a fitting {c} flow {cp:.2f}, distinct fitting {c} flows reproduced {cov:.2f}; "
                  f"validation {c} bits/flow {nll[n][y == c].mean():.2f}; "
                  f"TV to the fitting {c} flows: first packet {t[0]:.2f}, packet count {t[1]:.2f}")

    # ---------------------------------------------------------------- 3. what the samples are made of
    owners, support = defaultdict(set), defaultdict(set)
    for lab, ev in events(fit, width):
        for e in ev:
            owners[e].add(lab)
            support[lab].add(e[2])
    print("\n## 3. Samples, small vs large classes (mean over draws)")
    print("| flows | copies of a fitting flow of the class (small / large) | events seen in own class (small / large) | "
          "only in other classes | nowhere | next length new to the class | distinct fitting flows reproduced (small / large) | TV first packet (small / large) | "
          "TV packet count (small / large) | bits/flow on validation (small / large) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    sets = {"validation (real)": [val], **syn}
    for n, ss in sets.items():
        cp = {g: np.mean([np.mean([(lab, k) in fit_keys for lab, k in zip(s.labels, flow_keys(s, width), strict=True)
                                   if small_of[lab] == g]) for s in ss]) for g in (True, False)}
        pv = [provenance(s, owners, support, width, small_of) for s in ss]
        share = {g: {k: np.mean([p[g][k] for p in pv]) for k in ("own", "other", "none", "new length")}
                 for g in ("small", "large")}
        tvs = [class_tvs(x, fit, classes) for x in ss]
        tvm = {g: [np.mean([t[c][j] for t in tvs for c in classes if small_of[c] == g]) for j in (0, 1)]
               for g in (True, False)}
        bits, cov = "", "- (smaller set)"
        if n in nll:
            vs = np.array([small_of[lab] for lab in val.labels])
            bits = f"{nll[n][vs].mean():.2f} / {nll[n][~vs].mean():.2f}"
            cv = {g: np.mean([coverage(x, fit, fit_keys_list, width, c) for x in ss for c in classes if small_of[c] == g])
                  for g in (True, False)}
            cov = f"{cv[True]:.3f} / {cv[False]:.3f}"
        print(f"| {n} | {cp[True]:.3f} / {cp[False]:.3f} | {share['small']['own']:.3f} / {share['large']['own']:.3f} | "
              f"{share['small']['other']:.3f} / {share['large']['other']:.3f} | "
              f"{share['small']['none']:.3f} / {share['large']['none']:.3f} | "
              f"{share['small']['new length']:.3f} / {share['large']['new length']:.3f} | {cov} | {tvm[True][0]:.3f} / {tvm[False][0]:.3f} | "
              f"{tvm[True][1]:.3f} / {tvm[False][1]:.3f} | {bits} |")

    # ---------------------------------------------------------------- 4. hypothesis tests
    print(f"\n## 4. Hypothesis tests (TSTR macro F1 per draw; mean; small-class mean F1), draws {draw_seeds}")
    vs = np.array([small_of[lab] for lab in val.labels])
    saved = llama.chain_mix_.weights.copy()
    llama.chain_mix_.weights[0] = 1.0  # on this fitted instance only: the first packet is the chain's draw
    try:
        first_chain = [llama.sample(len(fit), cls=fit.labels.tolist(), random_state=s) for s in draw_seeds]
        bits_fc = -llama.log_likelihood(val) / np.log(2)
    finally:
        llama.chain_mix_.weights[:] = saved
    fc_name = "first from chain: llama with chain weight 1 at the first packet"
    rows, topped, per_fc = {}, [], []
    for k in range(args.draws):
        L, M = syn["llama"][k], syn["markov"][k]
        sets_k = {"llama": L, "markov": M, "swap: llama, small classes from markov": swap(L, M, small),
                  "swap: markov, small classes from llama": swap(M, L, small)}
        pools = {n: g.sample(POOL * len(fit), cls=np.repeat(fit.labels, POOL).tolist(), random_state=draw_seeds[k] + 11)
                 for n, g in gens.items()}
        for a, b in (("llama", "llama"), ("llama", "markov"), ("markov", "llama"), ("markov", "markov")):
            s, t = copy_novel(syn[a][k], pools[b], fit_keys, fc, width)
            sets_k[f"copies x novel: {a}'s copies, {b}'s novel flows"] = s
            topped.append(t)
        sets_k[fc_name] = first_chain[k]
        for n, s in sets_k.items():
            f, _, _ = scores(forest_predictions(s, val, width), val, classes)
            rows.setdefault(n, []).append((float(f.mean()), float(f[is_small].mean())))
            if n == fc_name:
                per_fc.append(f)
    print("| training set | macro F1 per draw | mean | small-class F1 mean |\n|---|---|---:|---:|")
    for n, v in rows.items():
        print(f"| {n} | {' '.join(f'{a:.3f}' for a, _ in v)} | {np.mean([a for a, _ in v]):.3f} | "
              f"{np.mean([b for _, b in v]):.3f} |")
    print(f"copies x novel: novel flows from a second draw of {POOL} x the class counts (sampling seed draw + 11); "
          f"flows topped up with that draw's copies (too few novel ones): {sum(topped)} over all sets")
    tvs = [class_tvs(x, fit, classes) for x in first_chain]
    tvm = {g: [np.mean([t[c][j] for t in tvs for c in classes if small_of[c] == g]) for j in (0, 1)] for g in (True, False)}
    print(f"first from chain: validation bits/flow {bits_fc.mean():.2f} (small {bits_fc[vs].mean():.2f}, large "
          f"{bits_fc[~vs].mean():.2f}) against llama {nll['llama'].mean():.2f} ({nll['llama'][vs].mean():.2f}, "
          f"{nll['llama'][~vs].mean():.2f}), markov {nll['markov'].mean():.2f}; TV first packet small / large "
          f"{tvm[True][0]:.3f} / {tvm[False][0]:.3f}, packet count {tvm[True][1]:.3f} / {tvm[False][1]:.3f}; distinct "
          f"fitting flows reproduced, small classes {np.mean([coverage(x, fit, fit_keys_list, width, c) for x in first_chain for c in small]):.3f}")
    f_fc = np.mean(per_fc, 0)
    print("first from chain, per-class F1 of the detailed classes (llama -> first from chain; markov): "
          + "; ".join(f"{c} {f1['llama'][classes.index(c)]:.2f} -> {f_fc[classes.index(c)]:.2f} "
                      f"({f1['markov'][classes.index(c)]:.2f})" for c in detail))


if __name__ == "__main__":
    main()
