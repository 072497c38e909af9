"""`GasfImageMapper`: flows <-> Gramian Angular Summation Field images, with an exact inverse.

Encoding (per flow, first ``N = image_size`` packets)::

    x_i   = L_i / scale                      in [-1, 1]   (L_i signed payload length, 0 = no packet)
    phi_i = arccos(x_i)
    G_ij  = cos(phi_i + phi_j) = x_i x_j - s_i s_j,   s_i = sqrt(1 - x_i^2)

``scale`` is one global number: the largest ``|L|`` of the training flows (learned in ``fit``,
or given), stored with the mapper (``gasf.json``). Padding is explicit and recoverable: a
position past the end of a flow is ``x = 0`` (``G_ii = -1``), a value no real packet has since
zero-payload packets are dropped at ingestion (see :mod:`trafficgen.data.flowset`).

Inverse (float64, vectorised over the batch):

1. magnitudes from the diagonal, ``|x_i| = sqrt((G_ii + 1) / 2)``;
2. signs: ``G + s s^T = x x^T`` is rank one, so ``sign(x_j)`` is the sign of
   ``sum_{i != j} (G_ij + s_i s_j) x_i``; started from row 0 and iterated (robust to noise:
   every packet votes, not only packet 0). GASF is invariant to a global sign flip
   (``x -> -x``); the convention of :class:`FlowSet` (packet 0 is client -> server, ``+``)
   fixes it;
3. a position is a packet when its ``|x|`` is at least half the smallest valid ``|x|``
   (``min_length / scale``). The end of the flow is (``end="first_gap"``) the first position
   that is not, or (``end="step"``) the ``n`` that best fits the presence pattern as a prefix,
   ``argmax_n #{i < n present} + #{i >= n absent}``: one noisy position inside a generated
   flow no longer cuts it short, one noisy position in its padding does not extend it; on real
   flows (an exact prefix) both agree. Everything after the end is padding (for a generator's
   samples packet 0 is always kept, and always ``+``: a flow has at least one packet, sent by
   its client);
4. ``|x| * scale`` is snapped to the nearest payload length seen in training
   (``snap="train"``) or rounded into the integer range ``[1, scale]`` (``snap="range"``).

Real flows round-trip exactly (float64 images); a slightly noisy image of a real flow decodes
to that flow; any image in ``[-1, 1]`` decodes to a valid flow.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError, NotFittedError

_SNAP_MODES = ("train", "range")
#: How :meth:`GasfImageMapper.lengths_from_scaled` finds the end of a flow (module docstring, step 3).
END_DETECTIONS = ("first_gap", "step")


def flow_ends(present: np.ndarray, end: str = "first_gap") -> np.ndarray:
    """Packets per flow (n,) int32 from a presence mask (n, N) (module docstring, step 3)."""
    present = np.asarray(present, dtype=bool)
    n, width = present.shape
    if end == "first_gap":
        return np.where(present.all(axis=1), width, np.argmin(present, axis=1)).astype(np.int32)
    if end != "step":
        raise ConfigError(f"end must be one of {END_DETECTIONS}, got {end!r}")
    # fit(k) = #{i < k present} + #{i >= k absent} = 2 cum_present(k) - k + #absent  (k = 0..N)
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(present, axis=1)], axis=1)  # (n, N+1)
    return np.argmax(2.0 * cum - np.arange(width + 1)[None, :], axis=1).astype(np.int32)


def gasf_from_scaled(x: np.ndarray) -> np.ndarray:
    """GASF of rescaled sequences: ``x`` (B, N) in [-1, 1] -> (B, N, N), same float dtype."""
    x = np.asarray(x)
    s = np.sqrt(np.clip(1.0 - x * x, 0.0, None))  # (B, N)
    return x[:, :, None] * x[:, None, :] - s[:, :, None] * s[:, None, :]  # (B, N, N)


def scaled_from_gasf(images: np.ndarray, *, n_iter: int = 3, refine: int = 10) -> np.ndarray:
    """Rescaled sequences ``x`` (B, N) from GASF images (B, N, N) or (B, 1, N, N), float64.

    Magnitudes from the diagonal, signs from the rank-one structure ``G + s s^T = x x^T``,
    global sign fixed so that ``x_0 >= 0``.
    """
    g = np.asarray(images, dtype=np.float64)
    if g.ndim == 4:
        if g.shape[1] != 1:
            raise InputFormatError(f"expected 1-channel images (B, 1, N, N), got shape {g.shape}")
        g = g[:, 0]
    if g.ndim != 3 or g.shape[1] != g.shape[2]:
        raise InputFormatError(f"expected square images (B, N, N), got shape {g.shape}")
    g = np.clip(0.5 * (g + np.swapaxes(g, 1, 2)), -1.0, 1.0)  # (B, N, N) symmetric part
    diag = np.diagonal(g, axis1=1, axis2=2)  # (B, N)
    mag = np.sqrt(np.clip((diag + 1.0) / 2.0, 0.0, 1.0))  # (B, N)
    s = np.sqrt(np.clip(1.0 - mag * mag, 0.0, None))  # (B, N)
    m = g + s[:, :, None] * s[:, None, :]  # (B, N, N) ~ x x^T
    n = g.shape[1]
    off = 1.0 - np.eye(n)  # (N, N) drop the diagonal (it votes for any sign)
    # start: signs relative to packet 0 (x_0 > 0 by convention)
    sign = np.where(m[:, 0, :] >= 0.0, 1.0, -1.0)  # (B, N)
    sign[:, 0] = 1.0
    for _ in range(n_iter):
        x = sign * mag  # (B, N)
        votes = np.einsum("bij,bi->bj", m * off, x)  # (B, N)
        sign = np.where(votes > 0.0, 1.0, np.where(votes < 0.0, -1.0, sign))
        sign = sign * np.where(sign[:, :1] < 0.0, -1.0, 1.0)  # global flip: x_0 >= 0
    x = sign * mag  # (B, N)
    if refine:
        x = _refine_gauss_newton(g, x, n_iter=refine)
    return x


def _refine_gauss_newton(g: np.ndarray, x: np.ndarray, *, n_iter: int) -> np.ndarray:
    """Least-squares fit of ``cos(phi_i + phi_j)`` to every entry of ``g`` (B, N, N), started at
    ``x`` (B, N): each angle is estimated from its whole row, not only the diagonal, which
    divides the effect of image noise by about ``sqrt(N)``. Exact images stay fixed points."""
    phi = np.arccos(np.clip(x, -1.0, 1.0))  # (B, N)
    n = g.shape[1]
    eye = np.eye(n)
    for _ in range(n_iter):
        ang = phi[:, :, None] + phi[:, None, :]  # (B, N, N)
        sin = np.sin(ang)  # (B, N, N)
        r = g - np.cos(ang)  # (B, N, N)
        if np.max(np.abs(r)) < 1e-13:
            break
        s2 = sin * sin  # (B, N, N)
        jtj = 2.0 * (s2 + eye[None] * s2.sum(axis=2, keepdims=True))  # (B, N, N)
        damp = 1e-6 * np.trace(jtj, axis1=1, axis2=2)[:, None, None] / n + 1e-12  # (B, 1, 1)
        jtr = -2.0 * np.einsum("bkj,bkj->bk", sin, r)  # (B, N)
        step = np.linalg.solve(jtj + damp * eye[None], jtr[..., None])[..., 0]  # (B, N)
        phi = np.clip(phi + step, 0.0, np.pi)
    x = np.cos(phi)  # (B, N)
    return np.where(x[:, :1] < 0.0, -x, x)  # global flip: x_0 >= 0


class GasfImageMapper:
    """Flows <-> GASF images (``N x N``, one channel) with a global, learned length scale.

    Parameters
    ----------
    image_size:
        ``N``, the number of packets per image (longer flows are truncated, shorter padded).
    scale:
        Length that maps to ``|x| = 1``. ``None``: learned in :meth:`fit` as ``max |L|``.
    snap:
        ``"train"`` (snap decoded lengths to the payload lengths seen in ``fit``) or
        ``"range"`` (round into ``[1, scale]``). ``"train"`` falls back to ``"range"`` when the
        mapper was not fitted on flows.

    Fitted attributes: ``scale_`` (float), ``valid_lengths_`` (sorted distinct ``|L|`` seen,
    int64 array, or ``None``), ``length_counts_`` (how many training packets had each of them,
    or ``None``), ``min_length_`` (smallest valid ``|L|``).
    """

    def __init__(self, *, image_size: int = 32, scale: float | None = None, snap: str = "train"):
        self.image_size = image_size
        self.scale = scale
        self.snap = snap

    # ------------------------------------------------------------------ fit
    def fit(self, flows: FlowSet) -> GasfImageMapper:
        """Learn the scale (``max |L|``) and the valid payload lengths of ``flows``."""
        self._check_params()
        lens = self._valid_lengths(flows, self.image_size)
        mags = np.abs(lens).astype(np.int64)
        if mags.size == 0 and self.scale is None:
            raise InputFormatError("fit needs at least one packet to learn the scale")
        self.scale_ = float(self.scale) if self.scale is not None else float(mags.max())
        self.valid_lengths_, self.length_counts_ = np.unique(mags, return_counts=True) if mags.size else (None, None)
        self.min_length_ = int(mags.min()) if mags.size else 1
        return self

    def _check_params(self):
        if int(self.image_size) < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")
        if self.scale is not None and not float(self.scale) > 0:
            raise ConfigError(f"scale must be > 0, got {self.scale}")
        if self.snap not in _SNAP_MODES:
            raise ConfigError(f"snap must be one of {_SNAP_MODES}, got {self.snap!r}")

    def _ensure_fitted(self):
        if hasattr(self, "scale_"):
            return
        if self.scale is None:
            raise NotFittedError("GasfImageMapper has no scale: pass scale=... or call fit(flows)")
        self._check_params()
        self.scale_, self.valid_lengths_, self.length_counts_, self.min_length_ = float(self.scale), None, None, 1

    @staticmethod
    def _valid_lengths(flows: FlowSet, width: int) -> np.ndarray:
        w = min(int(width), flows.max_packets)
        valid = flows.valid_mask[:, :w]
        lens = flows.lengths[:, :w][valid]
        if np.any(lens == 0):
            row = int(np.argwhere(valid & (flows.lengths[:, :w] == 0))[0, 0])
            raise InputFormatError("GASF cannot represent a zero-payload packet inside a flow "
                                   "(drop zero-payload packets at ingestion)", offset=row)
        return lens

    # ------------------------------------------------------------------ encode / decode
    def scale_flows(self, flows: FlowSet, width: int | None = None) -> np.ndarray:
        """Rescaled sequences ``x = L / scale`` (n, width) float64, 0 past each flow's end.

        ``width`` defaults to ``image_size``; a larger width adds padding (``x = 0``).
        Lengths beyond the scale are clipped to ``|x| = 1`` (with a warning): not invertible.
        """
        self._ensure_fitted()
        width = int(self.image_size if width is None else width)
        self._valid_lengths(flows, width)  # validation only
        if flows.max_packets and np.any(flows.lengths[:, 0] < 0):
            raise InputFormatError("GASF needs packet 0 of every flow to be client -> server (+); "
                                   f"{int(np.sum(flows.lengths[:, 0] < 0))} flows start negative",
                                   offset=int(np.argmax(flows.lengths[:, 0] < 0)))
        x = flows.to_features(width).astype(np.float64) / self.scale_  # (n, W)
        n_sat = int(np.sum(np.abs(x) > 1.0))
        if n_sat:
            warnings.warn(f"{n_sat} payload lengths exceed the GASF scale {self.scale_:g}; clipped",
                          stacklevel=2)
        return np.clip(x, -1.0, 1.0)

    def encode(self, flows: FlowSet, *, dtype=np.float64) -> np.ndarray:
        """GASF images (n, 1, N, N). Use float64 (default) for an exact inverse."""
        x = self.scale_flows(flows)  # (n, N)
        return gasf_from_scaled(x)[:, None].astype(dtype, copy=False)  # (n, 1, N, N)

    def lengths_from_scaled(self, x: np.ndarray, *, samples: bool = False, end: str = "first_gap",
                            table: np.ndarray | None = None,
                            n_packets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Snap rescaled sequences (n, N) to signed integer lengths + ``n_packets`` (end detection
        ``end``, see the module docstring, step 3; or the given ``n_packets`` (n,), every position
        before it a packet). ``table`` (sorted lengths, optional) replaces the training lengths of
        ``snap="train"`` (e.g. the lengths of one class).

        ``samples=True`` (a generator's output) makes every row a valid flow by construction: at
        least one packet, and packet 0 client -> server (+); real data decodes as it is."""
        self._ensure_fitted()
        x = np.asarray(x, dtype=np.float64)
        mag = np.abs(x) * self.scale_  # (n, N)
        if n_packets is None:
            n_packets = flow_ends(mag >= 0.5 * self.min_length_, end)  # (n,) from the presence pattern
        else:
            n_packets = np.clip(np.asarray(n_packets, dtype=np.int32), 0, x.shape[1])
        if samples:
            n_packets = np.maximum(n_packets, 1)  # a flow has at least one packet
        lengths = self.valid_lengths_ if table is None else np.asarray(table, dtype=np.int64)
        if self.snap == "train" and lengths is not None and len(lengths):
            table = lengths.astype(np.float64)
            hi = np.clip(np.searchsorted(table, mag), 1, len(table) - 1) if len(table) > 1 else np.zeros(
                mag.shape, dtype=np.int64)
            lo = np.maximum(hi - 1, 0)
            pick = np.where(np.abs(table[lo] - mag) <= np.abs(table[hi] - mag), lo, hi)
            snapped = lengths[pick]  # (n, N)
        else:
            snapped = np.clip(np.rint(mag), 1, max(1, int(np.floor(self.scale_)))).astype(np.int64)
        signed = np.where(x < 0, -snapped, snapped)  # (n, N)
        if samples:
            signed[:, 0] = snapped[:, 0]  # packet 0 is client -> server (+) by the FlowSet convention
        signed[np.arange(x.shape[1])[None, :] >= n_packets[:, None]] = 0
        return signed.astype(np.int32), n_packets

    def decode(self, images: np.ndarray, labels=None) -> FlowSet:
        """Flows from GASF images (n, 1, N, N) or (n, N, N) (any float dtype, values clipped to
        [-1, 1]); ``labels`` (optional) is attached to the result."""
        x = scaled_from_gasf(images)  # (n, N)
        lengths, n_packets = self.lengths_from_scaled(x)
        return FlowSet(lengths=lengths, n_packets=n_packets, labels=labels)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        self._ensure_fitted()
        return {"type": "GasfImageMapper", "image_size": int(self.image_size), "scale": self.scale,
                "snap": self.snap, "scale_": self.scale_, "min_length_": self.min_length_,
                "valid_lengths_": None if self.valid_lengths_ is None else self.valid_lengths_.tolist(),
                "length_counts_": None if self.length_counts_ is None else self.length_counts_.tolist()}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> GasfImageMapper:
        if obj.get("type") != "GasfImageMapper":
            raise InputFormatError(f"not a GasfImageMapper dict (type={obj.get('type')!r})")
        m = cls(image_size=int(obj["image_size"]), scale=obj["scale"], snap=obj["snap"])
        m.scale_ = float(obj["scale_"])
        m.min_length_ = int(obj["min_length_"])
        vl = obj["valid_lengths_"]
        m.valid_lengths_ = None if vl is None else np.asarray(vl, dtype=np.int64)
        lc = obj.get("length_counts_")  # absent in mappers saved before it existed
        m.length_counts_ = None if lc is None else np.asarray(lc, dtype=np.int64)
        if m.length_counts_ is not None and (m.valid_lengths_ is None or m.length_counts_.shape != m.valid_lengths_.shape):
            raise InputFormatError("length_counts_ must have one count per entry of valid_lengths_")
        return m

    def save(self, path: str | os.PathLike) -> None:
        """Write the mapper as JSON (atomically)."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> GasfImageMapper:
        try:
            obj = json.loads(open(path).read())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFormatError(f"cannot read GASF mapper JSON ({exc})", path=str(path)) from exc
        return cls.from_dict(obj)

    def __repr__(self) -> str:
        return f"GasfImageMapper(image_size={self.image_size}, scale={self.scale}, snap={self.snap!r})"
