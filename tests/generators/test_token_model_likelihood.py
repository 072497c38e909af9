"""Held-out likelihood of the token models (LLaMA, Mamba2), the step-0 mask (a flow starts with a
client->server packet) and the shared length features (folded into a plain HF model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trafficgen.data.flowset import FlowSet
from trafficgen.generators.llama import LlamaGenerator
from trafficgen.generators.mamba import MambaGenerator
from trafficgen.representations.tokenizer import EOS_ID


def _flows(n: int = 120, seed: int = 0) -> FlowSet:
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        k = int(rng.integers(1, 6))
        seq = [int(x) for x in rng.choice([60, -60, 1400, -1400, 517, -90], size=k)]
        seq[0] = abs(seq[0])
        seqs.append(seq)
        labels.append("a" if i % 2 else "b")
    return FlowSet.from_sequences(seqs, labels=labels, max_packets=5)


def _reference_log_likelihood(gen, flows) -> np.ndarray:
    """log p(x | c) from the HF forward's full logits, restricted and masked by hand."""
    tok = gen.tokenizer_
    ids, _ = tok.encode(flows, gen.max_packets_, clip=True)
    with torch.no_grad():
        logits = gen.model_(input_ids=torch.from_numpy(ids[:, :-1])).logits.double()  # (n, W+1, V)
    out = np.zeros(len(ids))
    for r in range(len(ids)):
        for j in range(ids.shape[1] - 1):
            target = int(ids[r, j + 1])
            if target == 0 or (j == gen.max_packets_ and target == EOS_ID):
                continue
            row = logits[r, j, EOS_ID:tok.first_class_id].clone()
            if j == 0:
                row[:tok.max_length + 1] = -np.inf
            out[r] += float(torch.log_softmax(row, 0)[target - EOS_ID])
    return out


@pytest.mark.parametrize("cls", [LlamaGenerator, MambaGenerator])
def test_log_likelihood_matches_the_hf_forward(cls):
    flows = _flows()
    gen = cls(preset="tiny", epochs=2, batch_size=32, val_fraction=0.0, random_state=0, progress=False,
              chain_mix=False).fit(flows)  # the LM's own terms (the mixture: tests/generators/test_chain_mix.py)
    got = gen.log_likelihood(flows[:12])
    np.testing.assert_allclose(got, _reference_log_likelihood(gen, flows[:12]), rtol=1e-4, atol=1e-4)
    assert np.all(got < 0)


def test_samples_start_client_to_server():
    flows = _flows()
    gen = LlamaGenerator(preset="tiny", epochs=1, batch_size=32, val_fraction=0.0, random_state=0,
                         progress=False).fit(flows)  # barely trained: negatives would be likely
    s = gen.sample(400, random_state=1)
    assert np.all(s.lengths[:, 0] > 0) and np.all(s.n_packets >= 1)


def test_length_features_fold_into_a_plain_model(tmp_path):
    from torch.nn.utils import parametrize

    flows = _flows()
    kw = dict(preset="tiny", epochs=2, batch_size=32, val_fraction=0.0, random_state=0, progress=False)
    gen = LlamaGenerator(length_features=True, **kw).fit(flows)
    assert not parametrize.is_parametrized(gen.model_.get_input_embeddings())
    assert not parametrize.is_parametrized(gen.model_.get_output_embeddings())
    plain = LlamaGenerator(length_features=False, **kw).fit(flows)
    assert not torch.equal(gen.model_.lm_head.weight, plain.model_.lm_head.weight)
    gen.save_pretrained(tmp_path / "m")
    back = LlamaGenerator.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(back.sample(50, random_state=0).lengths, gen.sample(50, random_state=0).lengths)
    np.testing.assert_allclose(back.log_likelihood(flows[:10]), gen.log_likelihood(flows[:10]), rtol=1e-6)


def test_length_feature_rows_share_neighbours():
    from trafficgen.generators.length_features import length_feature_matrix
    from trafficgen.representations.tokenizer import FlowTokenizer

    tok = FlowTokenizer(classes=["a"])
    phi = length_feature_matrix(tok)
    ids = tok.length_to_id(np.array([1350, 1351, 60, -1350]))
    cos = lambda a, b: float(phi[a] @ phi[b] / np.linalg.norm(phi[a]) / np.linalg.norm(phi[b]))  # noqa: E731
    assert cos(ids[0], ids[1]) > 0.99 and cos(ids[0], ids[2]) < 0.5 and cos(ids[0], ids[3]) == 0.0
    assert phi[tok.class_id("a")].sum() == 0 and phi[EOS_ID].sum() == 1
