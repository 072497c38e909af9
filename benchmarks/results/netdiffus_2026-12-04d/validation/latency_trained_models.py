import json, os, sys, time, torch
torch.set_num_threads(2)
from trafficgen.generators.netdiffus import NetDiffusGenerator
out = {}
for ds in ("ndpi", "cicdoh20"):
    gen = NetDiffusGenerator.from_pretrained(f"/tmp/runs/ndv/model_{ds}/{ds}_defaults4000")
    gen.sample(50, random_state=0)
    for rep in range(2):
        for steps, prec in ((10, "fp32"), (10, "bf16"), (15, "bf16"), (20, "bf16"), (20, "fp32")):
            gen.num_inference_steps, gen.sample_precision = steps, prec
            load = os.getloadavg()[0]
            t0 = time.perf_counter(); f = gen.sample(1000, random_state=1); dt = time.perf_counter() - t0
            key = f"{ds} {steps} {prec}"
            out.setdefault(key, []).append(1000 * dt / len(f))
            print(key, f"rep {rep}: {1000*dt/len(f):.2f} ms/flow (load {load:.2f})", flush=True)
print(json.dumps({k: min(v) for k, v in out.items()}, indent=1))
