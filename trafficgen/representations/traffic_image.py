"""LEAD's Traffic-to-Image mapping: the one definition of the RGB frames, for numpy and torch.

Eq. 2 (RGB), :func:`traffic_frames`: a series of value matrices ``v_t`` becomes frames
``[v_t ; D1_t ; D2_t]`` with ``D1_t = v_t - v_{t-1}`` and ``D2_t = D1_t - D1_{t-1}``. A channel is 0
wherever its definition needs a matrix from before the first one: ``D1_0 = 0``, ``D2_0 = D2_1 = 0``
(``D2_1 = (v_1 - v_0) - (v_0 - v_{-1})`` needs ``v_{-1}``). The alternative, reading the missing
``D1_0`` as 0 and so ``D2_1 = D1_1``, invents a second difference equal to the first one (it
assumes ``v_{-1} = v_0``). The function takes numpy arrays or torch tensors (numpy input does
not import torch), with time on axis -3: ``(T, N, N) -> (T, C, N, N)`` for a whole series (LEAD:
computed once, windows index into it) or ``(B, T, N, N) -> (B, T, C, N, N)`` for a batch of
windows (ViT-LSTM: the differences start at each window's first matrix).

:class:`TrafficImageMapper` is the numpy reference of Eq. 1 + Eq. 2 (float64, exactly invertible
with the scale). Eq. 1 (per matrix): ``X^G_t = 255 - 255 (X_t - min_t) / (max_t - min_t)`` --
each matrix is min-max scaled by its own min and max and inverted (large traffic = dark). A
constant matrix (``max_t == min_t``) has no scale; its normalised value is defined as 0, i.e.
``X^G_t = 255`` everywhere, and decoding gives back the constant (``min_t``) exactly. The frames
are :func:`traffic_frames` of ``X^G / 255``. (LEAD and ViT-LSTM call :func:`traffic_frames` on
their own invertible global log scale instead of Eq. 1: the per-matrix min-max throws away the
scale a real-unit forecast needs.)

Scale (decided once): images are returned divided by 255, so the value channel lies in [0, 1];
the difference channels are **signed** (D1 in [-1, 1], D2 in [-2, 2]). Per-matrix ``mins`` and
``maxs`` are returned beside the images: without them the real scale is lost (LEAD's metric works
on the normalised values; :mod:`trafficgen.evaluation.tm.forecast_metrics` always reports real units too).
"""
from __future__ import annotations

import numpy as np

from trafficgen.errors import ConfigError

__all__ = ["TrafficImageMapper", "traffic_frames"]


def traffic_frames(values, *, grayscale: bool = False):
    """Traffic-to-Image frames ``[value, D1, D2]`` of a series (numpy array or torch tensor).

    ``values`` (..., T, N, N) -> (..., T, 3, N, N); ``grayscale`` keeps only the value channel ->
    (..., T, 1, N, N) (the paper's grayscale ablation). Differences are taken along axis -3 and
    are 0 where they would need a matrix before the first one (``D1_0``, ``D2_0``, ``D2_1``).
    """
    if isinstance(values, np.ndarray):
        zeros_like, stack = np.zeros_like, lambda xs: np.stack(xs, axis=-3)
    else:
        import torch

        zeros_like, stack = torch.zeros_like, lambda xs: torch.stack(xs, dim=-3)
    if grayscale:
        return values[..., None, :, :]  # (..., T, 1, N, N)
    d1 = zeros_like(values)
    d1[..., 1:, :, :] = values[..., 1:, :, :] - values[..., :-1, :, :]  # (..., T, N, N)
    d2 = zeros_like(values)
    d2[..., 2:, :, :] = d1[..., 2:, :, :] - d1[..., 1:-1, :, :]  # (..., T, N, N)
    return stack([values, d1, d2])  # (..., T, 3, N, N)


class TrafficImageMapper:
    """Traffic matrices (T, N, N) <-> Traffic-to-Image frames (T, 3|1, N, N) + per-matrix scale.

    ``grayscale=True`` keeps only the value channel (LEAD's grayscale ablation).
    """

    name = "traffic_image"

    def __init__(self, grayscale: bool = False):
        self.grayscale = grayscale

    @property
    def n_channels(self) -> int:
        return 1 if self.grayscale else 3

    def encode(self, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """values (T, N, N) -> (images (T, C, N, N) float64, mins (T,), maxs (T,))."""
        values = np.asarray(getattr(values, "values", values), dtype=np.float64)
        if values.ndim != 3 or values.shape[1] != values.shape[2]:
            raise ConfigError(f"expected (T, N, N) traffic matrices, got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ConfigError("traffic matrices contain NaN or infinite values")
        mins = values.min(axis=(1, 2))  # (T,)
        maxs = values.max(axis=(1, 2))  # (T,)
        span = maxs - mins  # (T,)
        safe = np.where(span > 0, span, 1.0)[:, None, None]  # (T, 1, 1)
        unit = (values - mins[:, None, None]) / safe  # (T, N, N) in [0, 1]; 0 for constant matrices
        gray = 1.0 - unit  # (T, N, N) = X^G / 255
        return traffic_frames(gray, grayscale=self.grayscale), mins, maxs  # (T, C, N, N)

    def decode_gray(self, x_gray, mins, maxs) -> np.ndarray:
        """Value channel (..., N, N) (the /255 scale of :meth:`encode`) + mins/maxs (...) -> real
        values (..., N, N): ``min + (1 - x_gray) * (max - min)``."""
        x_gray = np.asarray(x_gray, dtype=np.float64)
        mins = np.asarray(mins, dtype=np.float64)[..., None, None]  # (..., 1, 1)
        maxs = np.asarray(maxs, dtype=np.float64)[..., None, None]  # (..., 1, 1)
        return mins + (1.0 - x_gray) * (maxs - mins)

    def decode(self, images, mins, maxs) -> np.ndarray:
        """Images (T, C, N, N) -> values (T, N, N) from the value channel."""
        return self.decode_gray(np.asarray(images)[:, 0], mins, maxs)

    def to_dict(self) -> dict:
        return {"mapper": self.name, "grayscale": bool(self.grayscale)}

    @classmethod
    def from_dict(cls, d: dict) -> TrafficImageMapper:
        if d.get("mapper") != cls.name:
            raise ConfigError(f"not a {cls.name} mapper config: {d}")
        return cls(grayscale=bool(d["grayscale"]))

    def save_png(self, images, path, *, max_frames: int = 8) -> None:
        """Write the first ``max_frames`` frames as a PNG grid (one row per channel)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from trafficgen._io import atomic_path

        images = np.asarray(images)[:max_frames]  # (F, C, N, N)
        n_f, n_c = images.shape[:2]
        fig, axes = plt.subplots(n_c, n_f, figsize=(1.6 * n_f, 1.6 * n_c), squeeze=False)
        titles = ["value (X^G)", "D1", "D2"]
        for c in range(n_c):
            lim = (0, 1) if c == 0 else (-float(c), float(c))
            for f in range(n_f):
                ax = axes[c, f]
                ax.imshow(images[f, c], cmap="gray" if c == 0 else "coolwarm", vmin=lim[0], vmax=lim[1])
                ax.set_xticks([])
                ax.set_yticks([])
                if f == 0:
                    ax.set_ylabel(titles[c], fontsize=7)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
