"""Traffic-matrix estimation baselines: pseudo-inverse, gravity, tomogravity (numpy only) and the
VAE-TME / WGAN-GP-TME latent-fit generators (torch, imported on use)."""
from trafficgen.generators.tm_estimation.classic import (
    add_access_links,
    gravity_estimate,
    pinv_estimate,
    tomogravity_estimate,
    weighted_projection,
)

__all__ = ["pinv_estimate", "gravity_estimate", "tomogravity_estimate", "weighted_projection",
           "add_access_links", "VAETME", "WGANGPTME"]


def __getattr__(name):
    if name in ("VAETME", "WGANGPTME"):
        from trafficgen.generators.tm_estimation import latent_fit

        return getattr(latent_fit, name)
    raise AttributeError(name)
