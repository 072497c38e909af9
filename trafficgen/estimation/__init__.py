"""Classic traffic-matrix estimation from link loads (numpy only, no learned model):
pseudo-inverse, gravity, tomogravity and the projections onto the link loads.

The learned estimators (DDPM-TME, VAE-TME, WGAN-GP-TME) live in ``trafficgen.generators.tm``.
"""
from trafficgen.estimation.classic import (
    add_access_links,
    gravity_estimate,
    pinv_estimate,
    tomogravity_estimate,
    weighted_projection,
)

__all__ = ["pinv_estimate", "gravity_estimate", "tomogravity_estimate", "weighted_projection",
           "add_access_links"]
