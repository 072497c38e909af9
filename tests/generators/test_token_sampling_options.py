"""Token models' sampling options: classifier-free guidance (cfg_dropout + guidance_scale) and the
per-class length support; both change what is sampled, never the likelihood."""
from __future__ import annotations

import numpy as np
import pytest

from tests.generators.test_llama import separable_flows
from trafficgen.errors import ConfigError
from trafficgen.generators.llama import LlamaGenerator
from trafficgen.registry import load_generator


@pytest.fixture(scope="module")
def guided():
    return LlamaGenerator(preset="tiny", epochs=15, batch_size=16, learning_rate=1e-2, cfg_dropout=0.2, random_state=0,
                          progress=False).fit(separable_flows(60))


def _class_lengths(flows, c):
    return set(flows.lengths[flows.valid_mask & (flows.labels == c)[:, None]].tolist())


def test_support_class_emits_only_the_class_training_lengths(guided, tmp_path):
    train = separable_flows(60)
    free = guided.sample(400, random_state=1, support=None)
    kept = guided.sample(400, random_state=1, support="class")
    assert np.array_equal(guided.sample(400, random_state=1).lengths, kept.lengths)  # the default
    for c in ("A", "B"):
        seen = _class_lengths(train, c)
        assert _class_lengths(kept, c) <= seen
    leaked = sum(len(_class_lengths(free, c) - _class_lengths(train, c)) for c in ("A", "B"))
    assert leaked > 0  # the untruncated tiny model does emit other lengths: the option is doing something
    # likelihood unchanged; a saved model keeps its support
    np.testing.assert_allclose(guided.log_likelihood(train), guided.log_likelihood(train))
    guided.save_pretrained(tmp_path / "g")
    back = load_generator(tmp_path / "g")
    assert np.array_equal(back.class_support_, guided.class_support_)
    assert np.array_equal(back.sample(50, random_state=2, support="class").lengths,
                          guided.sample(50, random_state=2, support="class").lengths)
    with pytest.raises(ConfigError, match="support"):
        guided.sample(3, support="everything")


def test_guidance_scale_one_is_the_conditional_model_and_guidance_changes_samples(guided):
    base = guided.sample(200, random_state=3, guidance_scale=1.0)
    assert np.array_equal(guided.sample(200, random_state=3).lengths, base.lengths)  # the default: guidance 1
    g2 = guided.sample(200, random_state=3, guidance_scale=2.0)
    assert not np.array_equal(g2.lengths, base.lengths)
    assert not np.array_equal(guided.sample(200, random_state=3, guidance_scale=1.5).lengths, base.lengths)
    assert (g2.lengths[:, 0] > 0).all() and g2.labels.tolist() == base.labels.tolist()
    plain = LlamaGenerator(preset="tiny", epochs=1, cfg_dropout=0.0, progress=False).fit(separable_flows(10))
    assert len(plain.sample(3)) == 3  # without an unconditional prompt the default is guidance 1
    with pytest.raises(ConfigError, match="cfg_dropout"):
        plain.sample(3, guidance_scale=2)
    with pytest.raises(ConfigError, match="cfg_dropout"):
        LlamaGenerator(preset="tiny", epochs=1, cfg_dropout=1.0, progress=False).fit(separable_flows(10))


def test_cfg_dropout_trains_the_unconditional_prompt(guided):
    """With cfg_dropout the <EOS> prompt gives a proper (class-mixed) first packet distribution;
    conditional rows stay class-specific."""
    import torch

    from trafficgen.representations.tokenizer import EOS_ID

    tok = guided.tokenizer_
    with torch.inference_mode():
        ids = torch.tensor([[tok.class_id("A")], [tok.class_id("B")], [EOS_ID]])
        hidden = guided._backbone_hidden(guided.model_, ids)[:, -1]  # (3, D)
        logits = guided.model_.lm_head(hidden)[:, tok.output_ids]
        logits[:, :tok.first_positive_output] = -torch.inf
        p = torch.softmax(logits, -1)
    small = slice(tok.first_positive_output + 99, tok.first_positive_output + 200)  # lengths 100..200 (class A)
    assert p[0, small].sum() > 0.5 and p[1, small].sum() < 0.5
    assert min(p[0, small].sum(), p[1, small].sum()) < p[2, small].sum() < max(p[0, small].sum(), p[1, small].sum())


def test_models_saved_before_the_class_support_sample_without_it(guided, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from trafficgen.errors import InputFormatError

    guided.save_pretrained(tmp_path / "old")
    cfg_path, weights = tmp_path / "old" / "config.json", tmp_path / "old" / "model.safetensors"
    cfg = json.loads(cfg_path.read_text())
    del cfg["params"]["support"], cfg["class_support"]
    cfg_path.write_text(json.dumps(cfg))
    save_file({k: v for k, v in load_file(weights).items() if k != "class_support"}, weights)
    old = load_generator(tmp_path / "old")
    assert old.support is None and old.class_support_ is None
    assert np.array_equal(old.sample(50, random_state=4).lengths, guided.sample(50, random_state=4, support=None).lengths)
    cfg["params"]["support"] = "class"  # says it has a support it does not carry
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(InputFormatError, match="class_support"):
        load_generator(tmp_path / "old")
