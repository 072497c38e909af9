"""LEAD: LLM-enhanced adapter-based conditional diffusion for traffic-matrix forecasting.

Public entry point: :class:`~trafficgen.generators.tm.lead.forecaster.LeadForecaster`
(registry name ``"lead"``). The submodules are one component each: ``vision_encoder``,
``temporal_aggregator``, ``adapter``, ``backbone``, ``conditioning``, ``unet``, ``model``.
"""
from trafficgen.generators.tm.lead.forecaster import LeadForecaster
from trafficgen.generators.tm.lead.model import ABLATIONS, LeadConfig, LeadNet

__all__ = ["ABLATIONS", "LeadConfig", "LeadForecaster", "LeadNet"]
