"""MambaGenerator (tiny preset): lean recurrence == HF Mamba2 forward, conditional sampling on
separable data, seeds, save/load, loss falling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.generators.test_llama import check_valid, in_range_fraction, separable_flows
from trafficgen.generators.mamba import Mamba2StepDecoder, MambaGenerator, build_mamba2
from trafficgen.registry import load_generator


@pytest.fixture(scope="module")
def fitted():
    return MambaGenerator(preset="tiny", epochs=40, batch_size=64, learning_rate=1e-2, val_fraction=0.0,
                          random_state=0, progress=False).fit(separable_flows())


@pytest.mark.parametrize("n_groups", [1, 2])
def test_step_decoder_matches_hf_forward(n_groups):
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(0)
    model = build_mamba2("tiny", 60).eval() if n_groups == 1 else Mamba2ForCausalLM(Mamba2Config(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, expand=2, num_heads=4, head_dim=16, state_size=8,
        n_groups=2, chunk_size=4)).eval()
    with torch.no_grad():  # non-trivial SSM parameters
        for layer in model.backbone.layers:
            layer.mixer.dt_bias.normal_()
            layer.mixer.D.normal_()
    ids = torch.randint(0, 60, (3, 9))
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=False).logits  # (3, 9, 60)
        dec = Mamba2StepDecoder(model, 3, 9)
        got = torch.stack([model.lm_head(dec.step(ids[:, t], t)) for t in range(9)], dim=1)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_fitted_and_loss_falls(fitted):
    assert fitted.classes_ == ["A", "B"] and fitted.max_packets_ == 6
    loss = fitted.history_["train_loss"]
    assert len(loss) == 40 and loss[-1] < 0.3 * loss[0]
    assert 1.5e5 < fitted.n_parameters() < 2.5e5  # mostly the 3004-token embedding + head


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_conditional_sampling_separable(fitted, dtype):
    for cls in "AB":
        s = fitted.sample(300, cls=cls, random_state=1, dtype=dtype)
        assert set(s.labels) == {cls}
        check_valid(s, 6)
        assert in_range_fraction(s, cls) >= 0.95, (cls, in_range_fraction(s, cls))


def test_seeds_and_save_load(fitted, tmp_path):
    a = fitted.sample(64, random_state=7)
    assert a == fitted.sample(64, random_state=7)
    assert not np.array_equal(a.lengths, fitted.sample(64, random_state=8).lengths)
    fitted.save_pretrained(tmp_path / "m")
    loaded = load_generator(tmp_path / "m")
    assert isinstance(loaded, MambaGenerator)
    assert loaded.sample(64, random_state=7) == a
