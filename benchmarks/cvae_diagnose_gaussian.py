"""Why the Gaussian CVAE of commit 7ad34e4 made bad flows: numbers (issue 18).

Runs against the *old* ``trafficgen/generators/cvae.py`` (MLP CVAE, Gaussian decoder over
``sign(L) log1p|L| / log1p(scale)``, decoder mean + GASF snapping at sampling time)::

    git -C /work/main worktree add /tmp/snap_cvae_old 7ad34e4
    cd /tmp/snap_cvae_old && OMP_NUM_THREADS=1 PYTHONPATH=/tmp/snap_cvae_old \
        python /work/main/benchmarks/cvae_diagnose_gaussian.py ndpi > diag_ndpi.json

Same split as the ``lightweight_ntg`` recipe (nDPI 200/class or CICDOH20 whole, 32 packets, seed 0,
test 0.3), the recorded configuration (``base``, 100 epochs, batch 64, early stopping). Prints one
JSON object: the decoder's learned noise scale, the KL per latent dimension (collapse), what the
posterior mean reconstructs, where the sampled flows end, and what the sampled lengths are.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def main(ds: str) -> None:
    from trafficgen.evaluation.fidelity import fidelity_metrics
    from trafficgen.evaluation.report import FidelityReport
    from trafficgen.generators.cvae import CVAEGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    torch.set_num_threads(1)
    cfg = {"max_packets": 32, "max_flows_per_class": {"ndpi": 200, "cicdoh20": None}}
    train, test = _load(ds, cfg).train_test_split(0.3, random_state=0)
    t0 = time.perf_counter()
    gen = CVAEGenerator(preset="base", epochs=100, batch_size=64, random_state=0, progress=False).fit(train)
    fit_s = time.perf_counter() - t0
    m = gen.model_
    v = torch.from_numpy(gen._to_log(train).astype(np.float32))  # (n, N)
    index = {c: i for i, c in enumerate(gen.classes_)}
    y = torch.tensor([index[c] for c in train.labels])
    with torch.no_grad():
        mu, logvar = m.encode(v, y)  # (n, Z)
        kl_dim = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(0).numpy()  # (Z,)
        recon = m.decode(mu, y).double().numpy()  # (n, N): the posterior mean through the decoder
        prior = m.decode(torch.randn(len(train), mu.shape[1], generator=torch.Generator().manual_seed(0)), y)
    sigma = float(torch.exp(0.5 * m.log_var_x))
    # one sigma in the scaled log space is a factor exp(sigma * log1p(scale)) on |L|
    factor = float(np.exp(sigma * np.log1p(gen.mapper_.scale_)))
    rl, rn = gen.mapper_.lengths_from_scaled(gen._from_log(recon), samples=True)
    n_true = np.minimum(train.n_packets, 32)
    valid = np.arange(32)[None, :] < n_true[:, None]
    exact = (rl == train.lengths[:, :32]) & valid
    syn = gen.sample(len(test), cls=test.labels.tolist(), random_state=1000)
    real_vocab = set(np.unique(test.lengths[test.valid_mask]).tolist())
    syn_vals = syn.lengths[syn.valid_mask]
    rep = FidelityReport.compute(test, syn, name="cvae", metrics=fidelity_metrics())
    pos_mean = prior.double().numpy()
    out = {
        "dataset": ds, "n_train": len(train), "fit_s_contended": round(fit_s, 1),
        "epochs_run": len(gen.history_["train_loss"]), "best_epoch": gen.history_["best_epoch"],
        "decoder_sigma_scaled": sigma, "decoder_sigma_as_length_factor": factor,
        "kl_per_dim": [round(float(k), 3) for k in kl_dim],
        "active_dims_kl_gt_0.05": int((kl_dim > 0.05).sum()), "kl_total_nats": float(kl_dim.sum()),
        "recon_n_packets_exact": float((rn == n_true).mean()),
        "recon_packet_length_exact": float(exact.sum() / valid.sum()),
        "real_mean_packets": float(n_true.mean()), "real_packets_eq_32": float((n_true == 32).mean()),
        "sample_mean_packets": float(syn.n_packets.mean()), "sample_packets_eq_32": float((syn.n_packets == 32).mean()),
        "sample_packets_hist": np.bincount(syn.n_packets, minlength=33).tolist(),
        "real_test_packets_hist": np.bincount(np.minimum(test.n_packets, 32), minlength=33).tolist(),
        "sample_distinct_lengths": int(len(np.unique(syn_vals))),
        "real_test_distinct_lengths": len(real_vocab),
        "sample_lengths_in_test_vocab": float(np.mean([x in real_vocab for x in syn_vals.tolist()])),
        "real_train_lengths_in_test_vocab": float(np.mean([x in real_vocab for x in
                                                           train.lengths[train.valid_mask].tolist()])),
        # the decoder mean at a padding position of a real flow: how far from 0 (the end marker)
        "prior_decoded_abs_mean_by_position": [round(float(a), 3) for a in np.abs(pos_mean).mean(0)],
        "jsd": rep.values(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ndpi")
