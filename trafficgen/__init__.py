"""trafficgen: synthetic network traffic that is faithful, private and useful, measured honestly.

Importing ``trafficgen`` is cheap: heavy modules (torch, transformers, diffusers) load only when
the name that needs them is first used.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module:attribute"
_LAZY = {
    "FlowSet": "trafficgen.data.flowset:FlowSet",
    "TMSeries": "trafficgen.data.tmseries:TMSeries",
    "TrafficgenError": "trafficgen.errors:TrafficgenError",
    "InputFormatError": "trafficgen.errors:InputFormatError",
    "PcapError": "trafficgen.errors:PcapError",
    "UnknownClassError": "trafficgen.errors:UnknownClassError",
    "read_pcap": "trafficgen.data.flows.pcap:read_pcap",
    "read_pcaps": "trafficgen.data.flows.pcap:read_pcaps",
    "get_generator": "trafficgen.registry:get_generator",
    "load_generator": "trafficgen.registry:load_generator",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trafficgen' has no attribute {name!r}")


def __dir__():
    return __all__
