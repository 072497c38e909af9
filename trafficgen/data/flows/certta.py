"""Reader for CertTA-format flow JSON (e.g. the CICDOH20 lists in CertTA's ``dataset/`` folder).

Each file is a JSON list of flows::

    {"timestamp": [s, ...], "direction_length": [signed IP length, ...], "packet_num": int,
     "label": int, "source_file": str}

Positive lengths are client -> server. **These are IP packet lengths, not L4 payload lengths**
(the FlowSet's ``meta["length_kind"]`` says ``"ip"`` so nobody compares them to payload
lengths by mistake). Integer labels are mapped to names with the dataset's ``labels.json``.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError


def read_certta_json(path: str | Path, *, label_names: dict | str | Path | None = None,
                     max_packets: int = 32) -> FlowSet:
    """Read one CertTA JSON list into a FlowSet (first ``max_packets`` packets per flow).

    ``label_names`` maps names to ints (``labels.json``) or is the path of that file; by default
    ``labels.json`` next to the JSON's folder (``json/../labels.json``) is used when present.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        records = json.loads(raw)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFormatError(f"not a readable CertTA JSON list ({exc})", path=str(path)) from exc
    if not isinstance(records, list):
        raise InputFormatError("expected a JSON list of flow records", path=str(path))
    names = _label_names(path, label_names)
    seqs, iats, labels, sources, first_ts = [], [], [], [], []
    for i, rec in enumerate(records):
        try:
            lengths = [int(x) for x in rec["direction_length"]][:max_packets]
            ts = [float(x) for x in rec.get("timestamp", [])][: len(lengths)]
            label = rec["label"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFormatError(f"flow record {i} lacks a valid {exc}", path=str(path), offset=i) from exc
        if not lengths or any(v == 0 for v in lengths):
            raise InputFormatError("a flow needs >= 1 packet and no zero lengths", path=str(path), offset=i)
        if lengths[0] < 0:  # client = sender of the first packet
            lengths = [-v for v in lengths]
        seqs.append(lengths)
        iats.append(np.diff(ts, prepend=ts[0]).tolist() if len(ts) == len(lengths) else [0.0] * len(lengths))
        labels.append(names.get(label, str(label)))
        sources.append(rec.get("source_file"))
        first_ts.append(ts[0] if ts else 0.0)
    flows = FlowSet.from_sequences(seqs, labels, max_packets=max_packets, iat=iats,
                                   source=sources, first_ts=first_ts)
    flows.meta["length_kind"] = "ip"
    return flows


def _label_names(path: Path, label_names) -> dict:
    if label_names is None:
        candidate = path.parent.parent / "labels.json"
        if not candidate.exists():
            return {}
        label_names = candidate
    if isinstance(label_names, (str, Path)):
        label_names = json.loads(Path(label_names).read_text())
    return {int(v): str(k) for k, v in label_names.items()}
