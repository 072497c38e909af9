"""Name -> "module:Class" tables, so the CLI and recipes can refer to components by name
without importing torch up front."""
from __future__ import annotations

import importlib
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
    # reference generators: the baselines every flow result is read against
    "markov": "trafficgen.generators.markov:MarkovGenerator",
    "copy": "trafficgen.generators.copy_train:CopyGenerator",
    "independent": "trafficgen.generators.independent:IndependentGenerator",
}

#: Traffic-matrix forecasters: ``fit(train, val=...)`` then ``predict(values, origins, horizons)``
#: (`trafficgen tm train/forecast --model NAME`).
TM_FORECASTERS: dict[str, str] = {
    "persistence": "trafficgen.generators.tm.naive:PersistenceForecaster",
    "seasonal": "trafficgen.generators.tm.naive:SeasonalNaiveForecaster",
    "historical-average": "trafficgen.generators.tm.naive:HistoricalAverageForecaster",
    "persistence-prob": "trafficgen.generators.tm.probabilistic_naive:ProbabilisticPersistenceForecaster",
    "historical-average-prob": "trafficgen.generators.tm.probabilistic_naive:ProbabilisticHistoricalAverageForecaster",
    "linear-anchor": "trafficgen.generators.tm.lead.anchor:LinearAnchorForecaster",
    "lstm": "trafficgen.generators.tm.rnn:LSTMForecaster",
    "gru": "trafficgen.generators.tm.rnn:GRUForecaster",
    "vit-lstm": "trafficgen.generators.tm.vit_lstm:ViTLSTMForecaster",
    "stgcn": "trafficgen.generators.tm.stgcn:STGCNForecaster",
    "lead": "trafficgen.generators.tm.lead.forecaster:LeadForecaster",
}

#: Learned traffic-matrix estimators: ``fit(train)``, ``sample(n)`` (synthesis) and
#: ``estimate(link_loads, routing)`` (`trafficgen tm train --model NAME`, `tm estimate`).
TM_ESTIMATORS: dict[str, str] = {
    "ddpm-tme": "trafficgen.generators.tm.ddpm_tme.model:DDPMTME",
    "vae-tme": "trafficgen.generators.tm.latent_fit:VAETME",
    "wgan-gp-tme": "trafficgen.generators.tm.latent_fit:WGANGPTME",
}

#: Classic (numpy, nothing learned) estimators: ``f(link_loads, routing, ...) -> (T, N*N)``.
TM_CLASSIC_ESTIMATORS: dict[str, str] = {
    "pinv": "trafficgen.estimation.classic:pinv_estimate",
    "gravity": "trafficgen.estimation.classic:gravity_estimate",
    "tomogravity": "trafficgen.estimation.classic:tomogravity_estimate",
}

#: Every trainable TM model by name (what `trafficgen tm train --model` accepts).
TM_MODELS: dict[str, str] = {**TM_FORECASTERS, **{k: v for k, v in TM_ESTIMATORS.items() if k == "ddpm-tme"}}

#: Flow metrics: `compute(real, synthetic)`; each declares its direction and range.
METRICS: dict[str, str] = {
    "packet_count_jsd": "trafficgen.evaluation.fidelity:PacketCountJSD",
    "length_jsd": "trafficgen.evaluation.fidelity:LengthJSD",
    "bigram_jsd": "trafficgen.evaluation.fidelity:BigramJSD",
    "markov_jsd": "trafficgen.evaluation.fidelity:MarkovJSD",
    "iat_jsd": "trafficgen.evaluation.fidelity:IATJSD",
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

#: Shipped datasets: zero-argument loaders.
DATASETS: dict[str, str] = {
    "ndpi_apps": "trafficgen.datasets.flows:load_ndpi_apps",
    "cicdoh20": "trafficgen.datasets.flows:load_cicdoh20",
    "abilene": "trafficgen.datasets.tm:load_abilene",
    "geant": "trafficgen.datasets.tm:load_geant",
}

#: Every table, by the name :func:`build` and :func:`resolve` take as ``kind``.
TABLES: dict[str, dict[str, str]] = {
    "generator": GENERATORS, "tm_forecaster": TM_FORECASTERS, "tm_estimator": TM_ESTIMATORS,
    "tm_classic_estimator": TM_CLASSIC_ESTIMATORS, "metric": METRICS, "representation": REPRESENTATIONS,
    "dataset": DATASETS,
}


def import_object(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def resolve(kind: str, name: str):
    """The object registered under ``name`` in table ``kind`` (see :data:`TABLES`), imported on demand."""
    table = TABLES.get(kind)
    if table is None:
        raise ConfigError(f"unknown registry table {kind!r}; known: {', '.join(TABLES)}")
    spec = table.get(name)
    if spec is None:
        raise ConfigError(f"unknown {kind.replace('_', ' ')} {name!r}; known: {', '.join(sorted(table))}")
    return import_object(spec)


def build(kind: str, name: str, **config):
    """An instance of the class registered under ``name`` in table ``kind``, built from keyword
    ``config``; a key the class does not take is a :class:`ConfigError` (never dropped)."""
    import inspect

    cls = resolve(kind, name)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [k for k, p in params.items()
                 if k != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ConfigError(f"{name}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(known)}")
    return cls(**config)


def get_generator(name: str):
    """The generator class registered under ``name``."""
    try:
        spec = GENERATORS[name]
    except KeyError:
        raise ConfigError(f"unknown generator {name!r}; known: {', '.join(sorted(GENERATORS))}") from None
    return import_object(spec)


def load_generator(path: str | Path):
    """Load any saved generator directory (reads ``config.json``'s ``generator`` field). A missing
    or corrupt folder raises one :class:`~trafficgen.errors.InputFormatError` naming the file."""
    from trafficgen.errors import InputFormatError
    from trafficgen.generators.serialization import CONFIG_FILE, read_config

    path = Path(path)
    name = read_config(path).get("generator")
    if not isinstance(name, str) or name not in GENERATORS:
        raise InputFormatError(f"field 'generator' must name a generator ({', '.join(sorted(GENERATORS))}), "
                               f"got {name!r}", path=path / CONFIG_FILE)
    return get_generator(name).from_pretrained(path)
