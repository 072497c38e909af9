"""DDPM-TME: latent diffusion for traffic-matrix synthesis and estimation from link loads."""
from trafficgen.generators.tm.ddpm_tme.estimate import estimate_tm
from trafficgen.generators.tm.ddpm_tme.model import DDPMTME

__all__ = ["DDPMTME", "estimate_tm"]
