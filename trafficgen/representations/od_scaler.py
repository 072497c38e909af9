"""The one log scale of the traffic-matrix models: ``u = log1p(x / s)``, then normalised.

OD traffic spans orders of magnitude, so every TM model works on ``u = log1p(x / s)`` and then
normalises ``u``. :class:`ODLogScaler` is that map for every model; the options say where the
models genuinely differ (each model's choice is stated where it builds its scaler):

``scale`` - what ``s`` is:

* ``"global"``: one number, the training series' mean (1 for an all-zero series) - the
  forecasters (LSTM, GRU, ViT-LSTM, STGCN, LEAD).
* ``"per_od"``: per OD pair, its training mean times ``relative_scale`` (floored at 1e-3 times the
  smallest positive mean, for all-zero flows) - DDPM-TME, VAE-TME, WGAN-GP-TME. Flows whose means
  differ by ~3000x (Abilene) all become O(1); ``relative_scale`` < 1 makes the map logarithmic
  further below the mean (GEANT's bursty flows need it: 0.01 cut the MMD of DDPM-TME samples to
  the training set from 0.28 to 0.07; Abilene does best with 1).

``normalize`` - how ``u`` becomes ``z``:

* ``"standard"``: per OD pair ``z = (u - mean) / std`` over the training series. A pair whose
  ``std`` is at most ``min_std`` gets ``std = min_std`` (``flat_std="clamp"``: the forecasters, so
  that a flat pair's forecast stays near its constant in real units) or ``std = 1``
  (``flat_std="unit"``: the estimators, which feed ``z`` to an encoder and must not amplify a
  test-time deviation of a flat pair).
* ``"minmax"``: one affine map of the training ``u`` range to [-1, 1] (``max`` at least ``min``
  + 1e-6) - LEAD, whose DDPM works in that data range.

Inverse (:meth:`inverse_transform`, and :meth:`torch_inverse`, differentiable): ``z`` is first
clipped to ``z_clip`` when given (LEAD: (-1.5, 1.5), a quarter of the training range of
extrapolation either side); with ``bounded=True`` ``u`` is clipped to [0, largest training ``u``
of the pair + 1] (at most ~e times its training maximum: an untrained or over-optimised decoder
cannot overflow ``expm1``); the result ``s * expm1(u)`` is clipped at 0. The round trip is exact
on the training range up to float rounding.
"""
from __future__ import annotations

import numpy as np

from trafficgen.errors import ConfigError, NotFittedError

__all__ = ["ODLogScaler"]

_SCALES = ("global", "per_od")
_NORMALIZE = ("standard", "minmax")
_FLAT_STD = ("clamp", "unit")


class ODLogScaler:
    """``fit(x (T, ...))`` learns the scale over axis 0 (per OD pair: ``x`` may be (T, N, N) or
    (T, n_od)); ``transform`` / ``inverse_transform`` map arrays of the same trailing shape."""

    def __init__(self, *, scale: str = "global", relative_scale: float = 1.0, normalize: str = "standard",
                 min_std: float = 1e-3, flat_std: str = "clamp", bounded: bool = False,
                 z_clip: tuple[float, float] | None = None):
        self.scale = scale
        self.relative_scale = relative_scale
        self.normalize = normalize
        self.min_std = min_std
        self.flat_std = flat_std
        self.bounded = bounded
        self.z_clip = z_clip

    def _check_options(self) -> None:
        for name, value, known in (("scale", self.scale, _SCALES), ("normalize", self.normalize, _NORMALIZE),
                                   ("flat_std", self.flat_std, _FLAT_STD)):
            if value not in known:
                raise ConfigError(f"{name} must be one of {known}, got {value!r}")
        if not self.relative_scale > 0:
            raise ConfigError(f"relative_scale must be > 0, got {self.relative_scale}")

    # ------------------------------------------------------------------ fit
    def fit(self, x) -> ODLogScaler:
        self._check_options()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2 or len(x) < 2:
            raise ConfigError(f"the scaler needs (T >= 2, ...) training values, got shape {x.shape}")
        if self.scale == "global":
            mean = float(x.mean())
            self.scale_ = mean if mean > 0 else 1.0
        else:
            m = x.mean(0)  # (...,) per OD pair
            floor = max(float(m[m > 0].min()) if np.any(m > 0) else 1.0, 1e-12) * 1e-3
            self.scale_ = np.maximum(m, floor) * self.relative_scale
        u = np.log1p(x / self.scale_)  # (T, ...)
        if self.normalize == "standard":
            self.mean_ = u.mean(0)
            sd = u.std(0)
            self.std_ = np.where(sd > self.min_std, sd, self.min_std if self.flat_std == "clamp" else 1.0)
        else:
            self.min_ = float(u.min())
            self.max_ = float(max(u.max(), u.min() + 1e-6))
        if self.bounded:
            self.upper_ = u.max(0) + 1.0
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "scale_"):
            raise NotFittedError("ODLogScaler is not fitted")

    # ------------------------------------------------------------------ maps
    def transform(self, x) -> np.ndarray:
        """Real units -> normalised ``z`` (float64)."""
        self._check_fitted()
        u = np.log1p(np.asarray(x, dtype=np.float64) / self.scale_)
        if self.normalize == "standard":
            return (u - self.mean_) / self.std_
        return 2 * (u - self.min_) / (self.max_ - self.min_) - 1

    def inverse_transform(self, z) -> np.ndarray:
        """Normalised ``z`` -> non-negative real units (float64)."""
        self._check_fitted()
        z = np.asarray(z, dtype=np.float64)
        if self.z_clip is not None:
            z = np.clip(z, *self.z_clip)
        if self.normalize == "standard":
            u = z * self.std_ + self.mean_
        else:
            u = (z + 1) / 2 * (self.max_ - self.min_) + self.min_
        if self.bounded:
            u = np.clip(u, 0.0, self.upper_)
        return np.maximum(np.expm1(u) * self.scale_, 0.0)

    def torch_inverse(self, z):
        """:meth:`inverse_transform` in torch, differentiable, in ``z``'s dtype and device."""
        import torch

        self._check_fitted()
        p = {k: torch.as_tensor(np.asarray(v), dtype=z.dtype, device=z.device) for k, v in self.state().items()}
        if self.z_clip is not None:
            z = z.clamp(*self.z_clip)
        if self.normalize == "standard":
            u = z * p["std"] + p["mean"]
        else:
            u = (z + 1) / 2 * (p["max"] - p["min"]) + p["min"]
        if self.bounded:
            return p["scale"] * torch.expm1(torch.minimum(u.clamp_min(0), p["upper"]))
        return (torch.expm1(u) * p["scale"]).clamp_min(0)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        """The fitted values as float64 arrays (a global scale and the min-max ends as shape (1,)),
        named ``scale``, ``mean``/``std`` or ``min``/``max``, and ``upper`` when bounded."""
        self._check_fitted()
        names = ["scale"] + (["mean", "std"] if self.normalize == "standard" else ["min", "max"])
        names += ["upper"] if self.bounded else []
        return {k: np.atleast_1d(np.asarray(getattr(self, f"{k}_"), dtype=np.float64)) for k in names}

    def load_state(self, state: dict) -> ODLogScaler:
        """Set the fitted values from :meth:`state`'s names (arrays, tensors or numbers)."""
        self._check_options()

        def get(k):
            v = state[k]
            v = v.double().numpy() if hasattr(v, "double") else np.asarray(v, dtype=np.float64)
            return v

        self.scale_ = float(get("scale").reshape(-1)[0]) if self.scale == "global" else get("scale")
        if self.normalize == "standard":
            self.mean_, self.std_ = get("mean"), get("std")
        else:
            self.min_, self.max_ = float(get("min").reshape(-1)[0]), float(get("max").reshape(-1)[0])
        if self.bounded:
            self.upper_ = get("upper")
        return self
