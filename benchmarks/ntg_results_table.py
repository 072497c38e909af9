"""The README's flow-generator tables from a lightweight_ntg-style recipe's ``results.json``.

    python benchmarks/ntg_results_table.py RUN/results.json

One Markdown table per data set: held-out bits per flow (the CVAE's an ELBO bound), the four
fidelity JSDs, leakage, novelty and TSTR macro F1 of every generator, the real-vs-real floor first.
With ``evaluation.draws`` > 1 every sample-based cell is the mean over the draws and TSTR carries
``+- sd`` of its draws' means; a last line gives the largest JSD spread across draws.
"""
from __future__ import annotations

import json
import statistics
import sys

ORDER = ("real_vs_real (floor)", "llama", "mamba", "markov", "copy", "independent", "smote", "fast_retransmit",
         "cvae", "netdiffus")
METRICS = ("packet_count_jsd", "length_jsd", "bigram_jsd", "markov_jsd", "leakage", "novelty")


def bits(nll: dict | None) -> str:
    if not nll:
        return ""
    return f"{nll['bits_per_flow']:.2f}" + (" (ELBO)" if "elbo" in nll["kind"] else "")


def main() -> None:
    with open(sys.argv[1]) as fh:
        results = json.load(fh)
    for name, d in results["datasets"].items():
        print(f"\n{name}: {d['n_flows']} flows, {len(d['classes'])} classes; "
              f"train-on-real TSTR {d['tstr']['train_on_real']:.3f}\n")
        print("| generator | bits/flow | packet-count JSD | length JSD | bigram JSD | Markov JSD | leakage | novelty | "
              "TSTR macro F1 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for g in (g for g in ORDER if g in d["fidelity"]):
            tstr = d["tstr"].get(g)
            cells = [f"{d['fidelity'][g][k]:.3f}" for k in METRICS]
            spread = d.get("tstr_draw_means", {}).get(g)
            sd = f" +- {statistics.pstdev(spread):.3f}" if spread and len(spread) > 1 else ""
            print(f"| {g} | {bits(d.get('nll', {}).get(g))} | " + " | ".join(cells) +
                  f" | {'' if tstr is None else f'{tstr:.3f}{sd}'} |")
        sds = [(v, g, k) for g, r in d.get("fidelity_sd", {}).items() for k, v in r.items() if k.endswith("_jsd")]
        if sds:
            v, g, k = max(sds)
            print(f"\n{d.get('draws')} synthetic draws per generator; largest JSD spread (sd over draws): {v:.3f} "
                  f"({g}, {k})")


if __name__ == "__main__":
    main()
