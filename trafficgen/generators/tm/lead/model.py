"""The LEAD network: frames -> vision encoder -> causal aggregator -> adapted frozen LM ->
dual conditioning -> conditional U-Net noise predictor. Hyper-parameters are one dataclass."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from trafficgen.errors import ConfigError
from trafficgen.generators.tm.lead.backbone import LanguageBackbone
from trafficgen.generators.tm.lead.conditioning import DualConditioning
from trafficgen.generators.tm.lead.temporal_aggregator import CausalTemporalAggregator
from trafficgen.generators.tm.lead.unet import build_unet, crop_to, pad_to, padded_size
from trafficgen.generators.tm.lead.vision_encoder import VisionEncoder

#: The paper's Table 3 ablations.
ABLATIONS = ("no_multiscale", "no_cglobal", "no_cseq", "no_llm", "grayscale")


@dataclass
class LeadConfig:
    n_nodes: int
    n_horizons: int = 3
    t_in: int = 24
    llm: str | None = "all-MiniLM-L6-v2"  # None: "no LLM" ablation (linear layer)
    ablations: list[str] = field(default_factory=list)
    residual: bool = True  # predict z[o+h] - z[o] and give z[o] to the U-Net as an input channel
    d_v: int = 32
    n_res_blocks: int = 2
    d_model: int = 128
    adapter_rank: int = 16
    adapter_scale: float = 1.0
    cond_dim: int = 128
    cross_dim: int = 128
    unet_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 2

    def __post_init__(self):
        unknown = sorted(set(self.ablations) - set(ABLATIONS))
        if unknown:
            raise ConfigError(f"unknown LEAD ablation(s) {unknown}; known: {', '.join(ABLATIONS)}")
        if self.t_in < 1 or self.n_nodes < 1 or self.n_horizons < 1:
            raise ConfigError("t_in, n_nodes and n_horizons must be positive")

    @property
    def image_channels(self) -> int:
        return 1 if "grayscale" in self.ablations else 3


class LeadNet(nn.Module):
    """``allow_download`` is not part of :class:`LeadConfig` on purpose: a saved config must not be
    able to switch downloads on (see :func:`~trafficgen.generators.tm.lead.backbone.load_frozen_lm`)."""

    def __init__(self, config: LeadConfig, *, allow_download: bool = False):
        super().__init__()
        self.config = c = config
        abl = set(c.ablations)
        self.vision = VisionEncoder(in_channels=c.image_channels, d_v=c.d_v, n_res_blocks=c.n_res_blocks,
                                    d_out=c.d_model)
        self.aggregator = CausalTemporalAggregator(t_in=c.t_in, d_model=c.d_model)
        self.backbone = LanguageBackbone(d_model=c.d_model, t_in=c.t_in,
                                         llm=None if "no_llm" in abl else c.llm,
                                         adapter_rank=c.adapter_rank, adapter_scale=c.adapter_scale,
                                         multiscale="no_multiscale" not in abl, allow_download=allow_download)
        self.conditioning = DualConditioning(hidden=self.backbone.hidden_size, cond_dim=c.cond_dim,
                                             cross_dim=c.cross_dim, use_global="no_cglobal" not in abl,
                                             use_seq="no_cseq" not in abl)
        self.horizon_embed = nn.Embedding(c.n_horizons, c.cond_dim)
        self.unet = build_unet(n_nodes=c.n_nodes, in_channels=1 + int(c.residual),
                               channels=tuple(c.unet_channels), layers_per_block=c.layers_per_block,
                               cross_dim=c.cross_dim, cond_dim=c.cond_dim)
        self.size = padded_size(c.n_nodes, len(c.unet_channels))

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(B, T, C, N, N) frames -> (c_global (B, cond_dim) | None, c_seq (B, T, cross_dim) | None)."""
        return self.condition(self.vision(frames))  # vision: (B, T, D)

    def encode_indexed(self, frames: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor | None,
                                                                                  torch.Tensor | None]:
        """Same as ``encode(frames[index])`` with every distinct frame encoded once.

        ``frames`` (T_all, C, N, N) all frames of a series, ``index`` (B, T) the frame of each window
        position. The vision encoder is per frame (no batch statistics), so overlapping windows can
        share the features of their common frames: exact, and several times cheaper for batches of
        consecutive windows."""
        uniq, inverse = torch.unique(index, return_inverse=True)  # (U,), (B, T)
        uniq, inverse = uniq.to(frames.device), inverse.to(frames.device)  # the index may live on the CPU
        feats = self.vision(frames[uniq][None])[0]  # (U, D)
        return self.condition(feats[inverse])  # feats[inverse]: (B, T, D)

    def condition(self, feats: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(B, T, D) frame features -> causal aggregator -> adapted LM -> dual conditioning."""
        z_st = self.aggregator(feats)  # (B, T, D)
        h = self.backbone(z_st)  # (B, T, H)
        return self.conditioning(h)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, horizon_idx: torch.Tensor,
                c_global: torch.Tensor | None, c_seq: torch.Tensor | None,
                anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Noise prediction. x_t (B', 1, N, N); t, horizon_idx (B',); c_global (B', cond) | None;
        c_seq (B', T, cross) | None; anchor (B', 1, N, N) when ``residual``. -> (B', 1, N, N)."""
        n = x_t.shape[-1]
        x = x_t if anchor is None else torch.cat([x_t, anchor], dim=1)  # (B', C_in, N, N)
        cls = self.horizon_embed(horizon_idx)  # (B', cond)
        if c_global is not None:
            cls = cls + c_global  # (B', cond)
        if c_seq is None:  # ablation: one all-zero token, i.e. cross-attention carries no information
            c_seq = x.new_zeros(x.shape[0], 1, self.config.cross_dim)  # (B', 1, cross)
        out = self.unet(pad_to(x, self.size), t, encoder_hidden_states=c_seq, class_labels=cls).sample
        return crop_to(out, n)  # (B', 1, N, N)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen LM weights (those are reloaded from ``config.llm``)."""
        if not self.backbone.uses_llm:
            return dict(self.state_dict())
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith("backbone.lm.") or ".adapter." in k}
