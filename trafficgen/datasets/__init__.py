"""Small real datasets shipped with the package (each folder keeps its licence file).

* ``load_ndpi_apps()``: labelled flows from nDPI's test captures (LGPL-3.0, ``ndpi/COPYING``).
* ``load_cicdoh20()``: CICDOH20 flow sequences from CertTA (MIT, ``certta/LICENSE``).
* ``load_abilene()``, ``load_geant()``: real traffic matrices (MIT, see their folders).
"""
from __future__ import annotations

import importlib

_LAZY = {
    "load_ndpi_apps": "trafficgen.datasets.flows",
    "load_cicdoh20": "trafficgen.datasets.flows",
    "ndpi_capture_dir": "trafficgen.datasets.flows",
    "load_abilene": "trafficgen.datasets.tm",
    "load_geant": "trafficgen.datasets.tm",
    "load_abilene_routing": "trafficgen.datasets.tm",
    "load_geant_topology": "trafficgen.datasets.tm",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
