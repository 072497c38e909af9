"""Corrupt model folders: every variant raises one ``InputFormatError`` naming the file, for every
flow generator, through the one load path (``registry.load_generator`` -> ``from_pretrained``)."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError
from trafficgen.generators.serialization import Field, validate_config
from trafficgen.registry import get_generator, load_generator

TINY = {
    "llama": dict(preset="tiny", epochs=1, batch_size=16, progress=False, random_state=0),
    "mamba": dict(preset="tiny", epochs=1, batch_size=16, progress=False, random_state=0),
    "netdiffus": dict(preset="tiny", epochs=1, batch_size=16, progress=False, random_state=0, max_packets=4),
    "cvae": dict(preset="tiny", epochs=1, batch_size=16, progress=False, random_state=0),
    "smote": dict(k_neighbors=2),
    "fast_retransmit": dict(p=0.5),
}
#: The extra JSON file each model needs.
EXTRA = {"llama": "tokenizer.json", "mamba": "tokenizer.json", "netdiffus": "gasf.json", "cvae": "tokenizer.json"}


def flows() -> FlowSet:
    rng = np.random.default_rng(0)
    seqs = [[int(rng.integers(100, 200)) * (-1) ** j for j in range(int(rng.integers(1, 5)))] for _ in range(24)]
    return FlowSet.from_sequences(seqs, labels=["A", "B", "C"] * 8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    data = flows()
    out = {}
    for name, params in TINY.items():
        get_generator(name)(**params).fit(data).save_pretrained(root / name)
        out[name] = root / name
    return out


def _edit_config(folder: Path, edit) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _classes_key(cfg: dict) -> str:
    return "classes" if "classes" in cfg else "classes_"


def _prior_key(cfg: dict) -> str:
    return "class_prior" if "class_prior" in cfg else "class_prior_"


def _set(key_of, value):
    def edit(cfg):
        cfg[key_of(cfg)] = value
    return edit


def _edit_tensors(folder: Path, edit) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def _wrong_shape(tensors):
    key = max(tensors, key=lambda k: tensors[k].numel())
    tensors[key] = torch.zeros(3, 1, dtype=tensors[key].dtype)


def _drop_one(tensors):
    tensors.pop(sorted(tensors)[0])


#: name -> (applies to model?, corrupt(folder, model), file named in the error, text in the error)
CORRUPTIONS = {
    "safetensors truncated": (lambda m: True, lambda f, m: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:100]), "model.safetensors", "safetensors"),
    "safetensors garbage": (lambda m: True, lambda f, m: (f / "model.safetensors").write_bytes(os.urandom(300)),
                            "model.safetensors", "safetensors"),
    "safetensors empty": (lambda m: True, lambda f, m: (f / "model.safetensors").write_bytes(b""),
                          "model.safetensors", "safetensors"),
    "safetensors deleted": (lambda m: True, lambda f, m: (f / "model.safetensors").unlink(), "model.safetensors",
                            "not found"),
    "tensor of the wrong shape": (lambda m: True, lambda f, m: _edit_tensors(f, _wrong_shape),
                                  "model.safetensors", ""),
    "tensor missing": (lambda m: True, lambda f, m: _edit_tensors(f, _drop_one), "model.safetensors", "missing"),
    "config not JSON": (lambda m: True, lambda f, m: (f / "config.json").write_text("{'classes': [1,"),
                        "config.json", "not valid JSON"),
    "config binary": (lambda m: True, lambda f, m: (f / "config.json").write_bytes(b"\xff\xfe\x00garbage"),
                      "config.json", ""),
    "config an array": (lambda m: True, lambda f, m: (f / "config.json").write_text("[1, 2]"), "config.json",
                        "JSON object"),
    "config deleted": (lambda m: True, lambda f, m: (f / "config.json").unlink(), "", "no config.json"),
    "generator unknown": (lambda m: True, lambda f, m: _edit_config(f, _set(lambda c: "generator", "nosuch")),
                          "config.json", "generator"),
    "generator not a string": (lambda m: True, lambda f, m: _edit_config(f, _set(lambda c: "generator", 5)),
                               "config.json", "generator"),
    "params not an object": (lambda m: True, lambda f, m: _edit_config(f, _set(lambda c: "params", "abc")),
                             "config.json", "'params'"),
    "empty classes": (lambda m: True, lambda f, m: _edit_config(f, _set(_classes_key, [])), "config.json",
                      "at least one class"),
    "classes not strings": (lambda m: True, lambda f, m: _edit_config(f, _set(_classes_key, [1, 2, 3])),
                            "config.json", "class names"),
    "classes a string": (lambda m: True, lambda f, m: _edit_config(f, _set(_classes_key, "ABC")), "config.json",
                         "an array"),
    "prior of the wrong length": (lambda m: True, lambda f, m: _edit_config(f, _set(_prior_key, [0.5, 0.5])),
                                  "config.json", "2 entries for 3 classes"),
    "prior negative": (lambda m: True, lambda f, m: _edit_config(f, _set(_prior_key, [1.0, -0.5, 0.5])),
                       "config.json", "non-negative"),
    "max_packets_ = -3": (lambda m: m in EXTRA, lambda f, m: _edit_config(f, _set(lambda c: "max_packets_", -3)),
                          "config.json", "'max_packets_' must be >= 1"),
    "max_packets_ a string": (lambda m: m in EXTRA,
                              lambda f, m: _edit_config(f, _set(lambda c: "max_packets_", "8")), "config.json",
                              "an integer"),
    "model config wrongly typed": (
        lambda m: m in EXTRA,
        lambda f, m: _edit_config(f, _set(lambda c: "unet_config" if "unet_config" in c else "model_config", 5)),
        "config.json", "an object"),
    "model config with a bad value": (
        lambda m: m in EXTRA,
        lambda f, m: _edit_config(f, lambda c: (c["unet_config"] if "unet_config" in c else c["model_config"])
                                  .update({"hidden_size" if m in ("llama", "mamba") else
                                           "in_channels" if m == "netdiffus" else "latent_dim": "x"})),
        "", ""),
    "extra file missing keys": (lambda m: m in EXTRA, lambda f, m: (f / EXTRA[m]).write_text(json.dumps(
        {k: v for k, v in json.loads((f / EXTRA[m]).read_text()).items() if k not in ("classes", "scale_")})),
        "EXTRA", "missing field"),
    "extra file not JSON": (lambda m: m in EXTRA, lambda f, m: (f / EXTRA[m]).write_text("nope"), "EXTRA",
                            "not valid JSON"),
    "extra file deleted": (lambda m: m in EXTRA, lambda f, m: (f / EXTRA[m]).unlink(), "EXTRA", "not found"),
}

CASES = [(m, c) for m in TINY for c, (applies, *_) in CORRUPTIONS.items() if applies(m)]


@pytest.mark.parametrize("model,corruption", CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_corrupt_folder_is_one_input_format_error(saved, tmp_path, model, corruption):
    _, corrupt, fname, text = CORRUPTIONS[corruption]
    folder = tmp_path / model
    shutil.copytree(saved[model], folder)
    load_generator(folder)  # the intact copy loads
    corrupt(folder, model)
    with pytest.raises(InputFormatError) as info:
        load_generator(folder)
    message = str(info.value)
    fname = EXTRA.get(model, "") if fname == "EXTRA" else fname
    named = folder / fname if fname else folder
    assert message.startswith(str(named)), message
    assert not fname or message[len(str(named)):].startswith((": ", " at offset")), message
    assert text in message
    assert "\n" not in message


def test_load_intact_and_file_modes(saved):
    for name, folder in saved.items():
        back = load_generator(folder)
        assert type(back).name == name and back.classes_ == ["A", "B", "C"]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
        assert modes["model.safetensors"] == modes["config.json"], modes  # not 0600 beside 0644


def test_load_missing_and_file_paths(tmp_path):
    with pytest.raises(InputFormatError, match="not found"):
        load_generator(tmp_path / "nothing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputFormatError, match="not a saved model directory"):
        load_generator(tmp_path / "f")


def test_validate_config_schema():
    schema = {"n": Field.integer(minimum=1), "p": Field.number(required=False), "s": Field.string(equals="x"),
              "classes": Field.class_names(), "prior": Field.class_prior("classes")}
    good = {"n": 2, "p": 1, "s": "x", "classes": ["a", "b"], "prior": [1, 0]}
    validate_config(good, schema, "c.json")
    bad = [({"n": True}, "'n' must be an integer"), ({"n": 0}, ">= 1"), ({"p": float("nan")}, "finite"),
           ({"s": "y"}, "must be 'x'"), ({"classes": ["a", "a"]}, "twice"), ({"prior": [0, 0]}, "positive sum"),
           ({"prior": [1, "a"]}, "numbers")]
    for change, text in bad:
        with pytest.raises(InputFormatError, match=text) as info:
            validate_config({**good, **change}, schema, "c.json")
        assert str(info.value).startswith("c.json: ")
    with pytest.raises(InputFormatError, match="missing field 'n'"):
        validate_config({k: v for k, v in good.items() if k != "n"}, schema, "c.json")
