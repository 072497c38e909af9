"""Sequence-generator benchmark: decode speed of the LLaMA / Mamba2 flow generators vs HF generate().

    nice -n 10 .venv/bin/python benchmarks/generate.py [--flows 10000] [--batch 5000] [--threads 2] [--repeats 3]
                                                       [--default-model]

(a) fp32 and bf16 matmul GFLOP/s at the model's shapes and at 2048^3 (the "peak");
(b) sampling of N class-conditioned 10-packet flows with the ~1.8M-parameter LLaMA "small"
    preset through our decode loop (static KV cache) and through HF ``generate()`` (same model,
    same batch size, ``min_new_tokens`` = 10 so both do 10 steps), in fp32 and in bf16 (both
    sides in the same precision); "ours" is the default decode, interpolated with a Markov chain
    (``chain_mix``: an order-2 chain fitted on the shipped nDPI flows at 10 packets, mapped onto
    the 32 benchmark classes, weights 0.5), timed beside the LM alone in the same process;
(c) the same for Mamba2 "small" (lean recurrence vs HF ``generate()`` with cache_params);
(d) one training epoch over N 10-packet flows with LLaMA small;
(e) with --default-model: training time of the default model on the shipped nDPI flows (in a
    temporary cache) and the packet-count JSD of 1000 sampled YouTube flows vs the real ones,
    beside the naive baseline "all real flows vs real YouTube".

Weights for (b)/(c) are random (timing only): with ~3000 outputs an <EOS> is rare, so flows run
to 10 packets. Model FLOPs per token = 2 x (non-embedding parameters used per token, LM head rows
included) + attention (4 x layers x width x average context) or SSM state update.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

N_CLASSES = 32
PACKETS = 10


def matmul_gflops(m: int, k: int, n: int, reps: int = 5, dtype=torch.float32) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9


def fitted_random(cls, preset: str, seed: int = 0):
    """A generator with random weights and the fitted attributes set (timing only)."""
    from trafficgen.generators.training import seeded_init
    from trafficgen.representations.tokenizer import FlowTokenizer

    gen = cls(preset=preset, max_packets=PACKETS)
    gen.tokenizer_ = FlowTokenizer(classes=[f"C{i}" for i in range(N_CLASSES)])
    gen.model_ = seeded_init(seed, lambda: gen._build_model(gen.tokenizer_.vocab_size, PACKETS + 2)).eval()
    gen.max_packets_ = PACKETS
    gen.classes_ = list(gen.tokenizer_.classes)
    gen.class_prior_ = np.full(N_CLASSES, 1 / N_CLASSES)
    gen.class_counts_ = {}
    return gen


def attach_chain(gen) -> None:
    """Give ``gen`` the default ``chain_mix`` part: an order-2 chain fitted on the shipped nDPI
    flows (10 packets), relabelled round-robin onto the benchmark's classes, weights 0.5."""
    import warnings

    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.generators.chain_mix import COUNT_EDGES, ChainMix
    from trafficgen.generators.markov import MarkovGenerator

    real = load_ndpi_apps(max_packets=PACKETS)
    real = real.with_labels([f"C{i % N_CLASSES}" for i in range(len(real))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chain = MarkovGenerator(order=2, max_packets=PACKETS, timing=False).fit(real)
    gen.chain_mix_ = ChainMix(chain, np.full(len(COUNT_EDGES) + 1, 0.5))


def flops_per_token(gen) -> float:
    m = gen.model_
    cfg = m.config
    emb = m.get_input_embeddings().weight.numel()
    head_rows = gen.tokenizer_.first_class_id - 1  # EOS + lengths
    body = sum(p.numel() for p in m.parameters()) - emb - m.lm_head.weight.numel()
    f = 2 * (body + head_rows * cfg.hidden_size)
    if gen.name == "llama":
        f += 4 * cfg.num_hidden_layers * cfg.hidden_size * (PACKETS + 1) / 2
    else:
        inner = cfg.expand * cfg.hidden_size
        f += 6 * cfg.num_hidden_layers * inner * cfg.state_size
    return f


def median_time(run, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run()`` (the VM's timings vary run to run)."""
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def time_ours(gen, n: int, batch: int, dtype: str = "float32", repeats: int = 1) -> float:
    """The decode loop as ``sample`` runs it by default: with a per-class length support mask
    (here every length allowed: the same work as a real support) and guidance 1."""
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([gen.tokenizer_.class_id(f"C{i % N_CLASSES}") for i in range(n)])
    support = torch.zeros(N_CLASSES, gen.tokenizer_.first_class_id - 1)  # (C, <EOS> + lengths), 0 = allowed
    gen.generate_ids(ids[:min(batch, 256)], generator=g, dtype=dtype, support_mask=support)  # warm-up

    def run():
        for i in range(0, n, batch):
            out = gen.generate_ids(ids[i:i + batch], generator=g, dtype=dtype, support_mask=support)
            assert out.shape[1] == PACKETS + 2

    return median_time(run, repeats)


def time_hf(gen, n: int, batch: int, dtype: str = "float32", repeats: int = 1) -> float:
    from transformers import GenerationConfig

    model = gen.model_.to(getattr(torch, dtype))
    cfg = GenerationConfig(do_sample=True, max_new_tokens=PACKETS, min_new_tokens=PACKETS, top_k=0, top_p=1.0,
                           pad_token_id=0, eos_token_id=1)
    ids = torch.tensor([gen.tokenizer_.class_id(f"C{i % N_CLASSES}") for i in range(n)])[:, None]
    torch.manual_seed(0)
    with torch.inference_mode():
        model.generate(input_ids=ids[:64], generation_config=cfg)  # warm-up

        def run():
            for i in range(0, n, batch):
                out = model.generate(input_ids=ids[i:i + batch], attention_mask=torch.ones_like(ids[i:i + batch]),
                                     generation_config=cfg)
                assert out.shape[1] == PACKETS + 1

        elapsed = median_time(run, repeats)
    gen.model_.float()
    return elapsed


def bench_decode(cls, n: int, batch: int, peak: float, hf: bool, hf_flows: int, dtype: str = "float32",
                 repeats: int = 1) -> dict:
    """Our loop vs HF generate(), both in ``dtype``; ``peak`` is the matmul peak of that dtype."""
    gen = fitted_random(cls, "small")
    params = sum(p.numel() for p in gen.model_.parameters())
    ft = flops_per_token(gen)
    lm_alone = time_ours(gen, n, batch, dtype, repeats)
    attach_chain(gen)
    ours = time_ours(gen, n, batch, dtype, repeats)
    gen.chain_mix_ = None
    tokens = n * PACKETS
    row = {"model": gen.name, "dtype": dtype, "params": params, "mflop_per_token": ft / 1e6, "ours_s": ours,
           "lm_alone_s": lm_alone, "ours_flows_per_s": n / ours, "ours_gflops": tokens * ft / ours / 1e9}
    row["ours_frac_peak"] = row["ours_gflops"] / peak
    if hf:
        m = min(n, hf_flows)
        t = time_hf(gen, m, batch, dtype, repeats)
        row.update(hf_s=t, hf_flows=m, hf_flows_per_s=m / t, speedup_vs_generate=(t / m) / (ours / n))
    return row


def bench_train_epoch(n: int) -> dict:
    from trafficgen.data.flowset import FlowSet
    from trafficgen.generators.llama import LlamaGenerator

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1501, (n, PACKETS)) * rng.choice([-1, 1], (n, PACKETS))
    lengths[:, 0] = np.abs(lengths[:, 0])  # the client sends the first packet (FlowSet's convention)
    flows = FlowSet.from_sequences(lengths.tolist(), [f"C{i % N_CLASSES}" for i in range(n)])
    out = {}
    for bs in (64, 256):
        gen = LlamaGenerator(preset="small", epochs=1, batch_size=bs, val_fraction=0.0, random_state=0,
                             progress=False)
        t = time.perf_counter()
        gen.fit(flows)
        out[f"epoch_s_batch{bs}"] = time.perf_counter() - t
    return out


def bench_default_model() -> dict:
    import os
    import tempfile

    from scipy.spatial.distance import jensenshannon

    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.pretrained import default_model as dm

    real = load_ndpi_apps()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRAFFICGEN_CACHE"] = tmp
        t = time.perf_counter()
        gen = dm.get_default_model(progress=True, flows=real)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        gen2 = dm.get_default_model(progress=False, flows=real)
        reload_s = time.perf_counter() - t
    synth = gen2.sample(1000, cls="YouTube", random_state=0)
    yt = real.select("YouTube")
    bins = np.arange(1, 34)

    def hist(f):
        return np.histogram(np.minimum(f.n_packets, 32), bins=bins)[0] + 0.0

    jsd = jensenshannon(hist(synth), hist(yt), base=2) ** 2
    base = jensenshannon(hist(real), hist(yt), base=2) ** 2
    return {"default_train_s": train_s, "default_reload_s": reload_s, "epochs_run": len(gen.history_["train_loss"]),
            "best_epoch": gen.history_["best_epoch"] + 1, "youtube_npackets_jsd": float(jsd),
            "baseline_all_flows_vs_youtube_jsd": float(base), "youtube_real_flows": len(yt)}


def bench_markov(n: int, repeats: int = 3) -> dict:
    """Vectorised sampling of the order-2 Markov reference, fitted on the shipped nDPI flows."""
    import warnings

    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.generators.markov import MarkovGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = MarkovGenerator(order=2, max_packets=10).fit(load_ndpi_apps(max_packets=10))
    s = median_time(lambda: gen.sample(n, random_state=0), repeats)
    return {"s": s, "flows_per_s": n / s}


def main() -> None:
    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.generators.mamba import MambaGenerator

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-hf", action="store_true", help="skip HF generate() (slow)")
    ap.add_argument("--hf-flows", type=int, default=2000, help="flows timed through generate() (rate compared)")
    ap.add_argument("--repeats", type=int, default=3, help="decode timings: median of this many runs")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--default-model", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}; decode times: median of {args.repeats} runs")
    shapes = [(args.batch, 128, 512), (args.batch, 128, 3001), (args.batch, 512, 128), (2048, 2048, 2048)]
    peaks = {}
    for dtype in ("float32", "bfloat16"):
        mm = {f"{m}x{k}x{n}": matmul_gflops(m, k, n, dtype=getattr(torch, dtype)) for m, k, n in shapes}
        peaks[dtype] = max(mm.values())
        print(f"(a) {dtype} matmul GFLOP/s: " + ", ".join(f"{k}: {v:.1f}" for k, v in mm.items())
              + f"  -> peak {peaks[dtype]:.1f}", flush=True)
    rows = {}
    for dtype in ("float32", "bfloat16"):
        for cls in (LlamaGenerator, MambaGenerator):
            r = bench_decode(cls, args.flows, args.batch, peaks[dtype], hf=not args.no_hf, hf_flows=args.hf_flows,
                             dtype=dtype, repeats=args.repeats)
            rows[r["model"], dtype] = r
            line = (f"({'b' if cls is LlamaGenerator else 'c'}) {r['model']:5s} {dtype:8s} {r['params'] / 1e6:.2f}M "
                    f"params, {r['mflop_per_token']:.2f} MFLOP/token: ours {args.flows} flows in {r['ours_s']:.2f} s "
                    f"= {r['ours_flows_per_s']:.0f} flows/s, {r['ours_gflops']:.1f} GFLOP/s "
                    f"({100 * r['ours_frac_peak']:.0f}% of the {dtype} peak); LM alone (chain_mix off) "
                    f"{r['lm_alone_s']:.2f} s")
            if "hf_s" in r:
                line += (f"; generate() {r['hf_flows']} flows in {r['hf_s']:.2f} s = {r['hf_flows_per_s']:.0f} "
                         f"flows/s; speed-up {r['speedup_vs_generate']:.1f}x")
            print(line, flush=True)
        print(f"    {dtype}: mamba / llama decode time: "
              f"{rows['mamba', dtype]['ours_s'] / rows['llama', dtype]['ours_s']:.2f}x", flush=True)
    mk = bench_markov(args.flows, repeats=args.repeats)
    print(f"(f) markov order 2 on the shipped nDPI flows (10 packets): {args.flows} flows in {mk['s']:.3f} s = "
          f"{mk['flows_per_s']:.0f} flows/s; LLaMA fp32 / markov time: "
          f"{rows['llama', 'float32']['ours_s'] / mk['s']:.1f}x", flush=True)
    if not args.no_train:
        tr = bench_train_epoch(args.flows)
        print("(d) llama small, one epoch over "
              f"{args.flows} 10-packet flows: " + ", ".join(f"{k} {v:.1f}" for k, v in tr.items()), flush=True)
    if args.default_model:
        print("(e) default model:", {k: (round(v, 4) if isinstance(v, float) else v)
                                     for k, v in bench_default_model().items()})


if __name__ == "__main__":
    main()
