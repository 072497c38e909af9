"""Name -> "module:Class" tables, so the CLI and recipes can refer to components by name
without importing torch up front."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from trafficgen.errors import ConfigError

#: Flow generators: `trafficgen train --model NAME`.
GENERATORS: dict[str, str] = {
    "llama": "trafficgen.generators.llama:LlamaGenerator",
    "mamba": "trafficgen.generators.mamba:MambaGenerator",
    "netdiffus": "trafficgen.generators.netdiffus:NetDiffusGenerator",
    "cvae": "trafficgen.generators.cvae:CVAEGenerator",
    "smote": "trafficgen.generators.smote:SmoteGenerator",
    "fast_retransmit": "trafficgen.generators.fast_retransmit:FastRetransmitGenerator",
}

#: Traffic-matrix models: `trafficgen tm train/forecast --model NAME`.
TM_MODELS: dict[str, str] = {
    "persistence": "trafficgen.generators.tm.naive:PersistenceForecaster",
    "seasonal": "trafficgen.generators.tm.naive:SeasonalNaiveForecaster",
    "historical-average": "trafficgen.generators.tm.naive:HistoricalAverageForecaster",
    "lstm": "trafficgen.generators.tm.rnn:LSTMForecaster",
    "gru": "trafficgen.generators.tm.rnn:GRUForecaster",
    "vit-lstm": "trafficgen.generators.tm.vit_lstm:ViTLSTMForecaster",
    "stgcn": "trafficgen.generators.tm.stgcn:STGCNForecaster",
    "lead": "trafficgen.generators.tm.lead.forecaster:LeadForecaster",
    "ddpm-tme": "trafficgen.generators.tm.ddpm_tme.model:DDPMTME",
}

#: Flow metrics: `compute(real, synthetic)`; each declares its direction and range.
METRICS: dict[str, str] = {
    "packet_count_jsd": "trafficgen.evaluation.fidelity:PacketCountJSD",
    "length_jsd": "trafficgen.evaluation.fidelity:LengthJSD",
    "bigram_jsd": "trafficgen.evaluation.fidelity:BigramJSD",
    "markov_jsd": "trafficgen.evaluation.fidelity:MarkovJSD",
    "uniq_align": "trafficgen.evaluation.privacy:UniqAlign",
    "leakage": "trafficgen.evaluation.privacy:Leakage",
    "novelty": "trafficgen.evaluation.privacy:Novelty",
}

#: Representations (tokenizers, image mappers).
REPRESENTATIONS: dict[str, str] = {
    "tokenizer": "trafficgen.representations.tokenizer:FlowTokenizer",
    "gasf": "trafficgen.representations.gasf:GasfImageMapper",
    "traffic_image": "trafficgen.representations.traffic_image:TrafficImageMapper",
}


def import_object(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_generator(name: str):
    """The generator class registered under ``name``."""
    try:
        spec = GENERATORS[name]
    except KeyError:
        raise ConfigError(f"unknown generator {name!r}; known: {', '.join(sorted(GENERATORS))}") from None
    return import_object(spec)


def load_generator(path: str | Path):
    """Load any saved generator directory (reads ``config.json``'s ``generator`` field)."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise ConfigError(f"{path}: not a saved model directory (no config.json)")
    name = json.loads(cfg_file.read_text()).get("generator")
    if name is None:
        raise ConfigError(f"{cfg_file}: missing 'generator' field")
    return get_generator(name).from_pretrained(path)
