"""Post-training int8 quantization of the neural flow generators (weight-only and dynamic).

Two modes, both applied in place to a generator's ``model_`` (an ``nn.Module``):

* ``"weight-only"``: every ``nn.Linear`` becomes :class:`Int8WeightOnlyLinear` and every
  ``nn.Embedding`` :class:`Int8WeightOnlyEmbedding`: symmetric per-output-channel (per-row) int8
  weights + float32 scales, dequantized on the fly. Written here because torchao's weight-only
  int8 layer is ~22x slower than fp32 on CPU for models this small.
* ``"dynamic"``: the same int8 weights, but ``nn.Linear`` runs through
  ``torch.ao.quantization.quantize_dynamic`` (int8 activations quantized per batch at run time,
  fbgemm/x86 int8 GEMM) -- :class:`DynamicInt8Linear`. Embeddings stay weight-only int8.

What is not quantized: convolutions (``nn.Conv1d`` of Mamba2, the ``UNet2DModel`` convs of
NetDiffus stay fp32), norms, biases, Mamba's ``A_log`` / ``D`` / ``dt_bias``.

Tied weights: when an ``nn.Linear`` shares its weight with an ``nn.Embedding`` (tied LM head),
both use one int8 tensor: per-row scales of a ``(V, D)`` embedding are exactly the per-output
channel scales of the ``(V, D)`` head. The duplicate keys are dropped on save and restored on load.

The lean step decoders of LLaMA / Mamba2 fuse projections that share an input (q/k/v,
gate/up) through :func:`fused_projection`: for weight-only layers (and plain ``nn.Linear``) it
concatenates the (dequantized) weights for one ``F.linear``; for dynamic layers it concatenates
the int8 rows and scales into one :class:`DynamicInt8Linear`, so the decode loop runs the int8
GEMM with exactly the stored int8 weights.

Persistence: the generator's own ``save_pretrained`` / ``from_pretrained`` (and
``trafficgen.registry.load_generator``), through :func:`quantized_tensors` and
:func:`load_quantized_state`: ``model.safetensors`` holds the
int8 weights (``<layer>.qweight``) and scales (``<layer>.scale``); ``config.json`` gets a
``quantization`` entry ``{"mode", "bits", "scheme", "linear", "embedding", "tied"}``. Loading
rebuilds the fp32 skeleton through the generator's own ``_load_state`` (with dequantized
weights) and then swaps in the quantized layers holding the stored int8 tensors bit for bit;
for ``"dynamic"`` the stored tensors are the weight-only ones and ``quantize_dynamic`` is
re-applied at load time (packed fbgemm weights are not portable, so they are never stored).
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from trafficgen.errors import ConfigError, InputFormatError

MODES = ("weight-only", "dynamic")


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``(O, I)`` float -> (``(O, I)`` int8 in [-127, 127], ``(O,)`` float32 scale)."""
    w = weight.detach().float()  # (O, I)
    absmax = w.abs().amax(dim=1)  # (O,)
    scale = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))  # (O,)
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)  # (O, I)
    return q, scale


class Int8WeightOnlyLinear(nn.Module):
    """``nn.Linear`` with int8 per-output-channel weights (``qweight`` (O, I), ``scale`` (O,)).

    ``weight`` is the dequantized float32 tensor ``qweight * scale[:, None]`` (computed on access);
    ``forward`` is ``F.linear(x, weight, bias)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.register_buffer("qweight", torch.zeros((out_features, in_features), dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear):
        mod = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q, s = quantize_per_channel(linear.weight)
        mod.qweight.copy_(q)
        mod.scale.copy_(s)
        if linear.bias is not None:
            mod.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return mod

    @property
    def weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale[:, None]  # (O, I)

    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype), self.bias)  # (..., O)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


class DynamicInt8Linear(Int8WeightOnlyLinear):
    """Same stored int8 weights as :class:`Int8WeightOnlyLinear`; ``forward`` runs the
    ``quantize_dynamic`` module (int8 activations quantized per call, int8 GEMM) built from them.
    The dynamic module is rebuilt from ``qweight`` / ``scale`` by :meth:`refresh` (after loading)
    and is not part of the ``state_dict``."""

    def refresh(self):
        """(Re)build the dynamic int8 module from ``qweight``, ``scale``, ``bias``."""
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dyn = quantize_dynamic(nn.Sequential(lin), {nn.Linear: per_channel_dynamic_qconfig})[0]
            # install our exact int8 weights (the observer would pick slightly different scales)
            qw = torch._make_per_channel_quantized_tensor(
                self.qweight.cpu(), self.scale.double().cpu(), torch.zeros(self.out_features, dtype=torch.long), 0)
            dyn.set_weight_bias(qw, None if self.bias is None else self.bias.detach().float().cpu())
        self.__dict__["_dynamic"] = dyn  # plain attribute: not a submodule, not in state_dict
        return self

    def forward(self, x):
        dyn = self.__dict__.get("_dynamic") or self.refresh().__dict__["_dynamic"]
        return dyn(x.float()).to(x.dtype)  # (..., O)


def fused_projection(modules, dtype=torch.float32, rows: slice | None = None):
    """One callable ``x (..., I) -> (..., sum O)`` equal to ``cat([m(x) for m in modules], -1)``
    (optionally only output ``rows`` of the concatenation).

    Dynamic int8 layers give one fused :class:`DynamicInt8Linear` (the same int8 rows and
    per-row scales; activations fp32); anything with a ``.weight`` (``nn.Linear``, weight-only
    int8) gives ``F.linear`` with the concatenated weight cast to ``dtype``.
    """
    import functools

    rows = slice(None) if rows is None else rows
    has_bias = [getattr(m, "bias", None) is not None for m in modules]
    bias = torch.cat([m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
                      for m in modules])[rows] if any(has_bias) else None
    if all(isinstance(m, DynamicInt8Linear) for m in modules):
        qweight = torch.cat([m.qweight for m in modules])[rows]  # (O', I)
        fused = DynamicInt8Linear(modules[0].in_features, qweight.shape[0], bias=bias is not None)
        fused.qweight = qweight
        fused.scale = torch.cat([m.scale for m in modules])[rows]
        if bias is not None:
            fused.bias = nn.Parameter(bias.float(), requires_grad=False)
        return fused.refresh()
    weight = torch.cat([m.weight.detach() for m in modules])[rows].to(dtype)  # (O', I)
    return functools.partial(F.linear, weight=weight, bias=None if bias is None else bias.to(dtype))


class Int8WeightOnlyEmbedding(nn.Module):
    """``nn.Embedding`` with int8 per-row weights (``qweight`` (V, D), ``scale`` (V,))."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = int(num_embeddings), int(embedding_dim), padding_idx
        self.register_buffer("qweight", torch.zeros((num_embeddings, embedding_dim), dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings, dtype=torch.float32))

    @classmethod
    def from_embedding(cls, emb: nn.Embedding):
        mod = cls(emb.num_embeddings, emb.embedding_dim, emb.padding_idx)
        q, s = quantize_per_channel(emb.weight)
        mod.qweight.copy_(q)
        mod.scale.copy_(s)
        return mod

    @property
    def weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale[:, None]  # (V, D)

    def forward(self, ids):
        return self.qweight[ids].float() * self.scale[ids][..., None]  # (..., D)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


QUANTIZED_TYPES = (Int8WeightOnlyLinear, Int8WeightOnlyEmbedding)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown quantization mode {mode!r}; known: {', '.join(MODES)}")
    return mode


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, module)


def quantize_model(model: nn.Module, *, mode: str = "weight-only", embeddings: bool = True) -> dict:
    """Swap ``nn.Linear`` (and ``nn.Embedding`` when ``embeddings``) layers of ``model`` for int8
    ones, in place. Returns ``{"mode", "bits", "scheme", "linear": [names], "embedding": [names],
    "tied": {linear_name: embedding_name}, "fp32_kept": [names of conv layers left in fp32]}``."""
    _check_mode(mode)
    linear_cls = DynamicInt8Linear if mode == "dynamic" else Int8WeightOnlyLinear
    mods = dict(model.named_modules())
    emb_by_weight = {id(m.weight): n for n, m in mods.items() if isinstance(m, nn.Embedding)}
    info = {"mode": mode, "bits": 8, "scheme": "symmetric per-output-channel int8", "linear": [],
            "embedding": [], "tied": {}, "fp32_kept": []}
    new_emb: dict[str, Int8WeightOnlyEmbedding] = {}
    if embeddings:
        for name, m in mods.items():
            if isinstance(m, nn.Embedding):
                new_emb[name] = Int8WeightOnlyEmbedding.from_embedding(m)
                info["embedding"].append(name)
    for name, m in mods.items():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            info["fp32_kept"].append(name)
        if not isinstance(m, nn.Linear):
            continue
        q = linear_cls.from_linear(m)
        tied = emb_by_weight.get(id(m.weight))
        if tied is not None and tied in new_emb:  # one int8 tensor for the tied head + embedding
            q.qweight, q.scale = new_emb[tied].qweight, new_emb[tied].scale
            info["tied"][name] = tied
        if mode == "dynamic":
            q.refresh()
        _set_module(model, name, q)
        info["linear"].append(name)
    for name, q in new_emb.items():
        _set_module(model, name, q)
    return info


def quantize_generator(generator, *, mode: str = "weight-only", embeddings: bool = True):
    """A quantized deep copy of a fitted neural generator (one with an ``nn.Module`` ``model_``);
    the copy's ``quantization_`` records what was swapped (see :func:`quantize_model`)."""
    _check_mode(mode)
    generator._check_fitted()
    if not isinstance(getattr(generator, "model_", None), nn.Module):
        raise ConfigError(f"{type(generator).__name__} has no torch model_ to quantize")
    if getattr(generator, "quantization_", None):
        raise ConfigError("generator is already quantized")
    gen = copy.deepcopy(generator)
    gen.model_ = gen.model_.cpu().eval()
    if hasattr(gen, "device"):
        gen.device = "cpu"  # int8 kernels here are CPU kernels
    gen.quantization_ = quantize_model(gen.model_, mode=mode, embeddings=embeddings)
    return gen


# ---------------------------------------------------------------------- persistence
def quantized_tensors(tensors: dict, info: dict) -> dict:
    """The tensors a quantized model stores: its state without the heads tied to an embedding
    (``info["tied"]``: stored once, under the embedding's name)."""
    tensors = dict(tensors)
    for head in info["tied"]:
        for suffix in ("qweight", "scale"):
            tensors.pop(f"{head}.{suffix}", None)
    return tensors


def load_quantized_state(cls, config: dict, tensors: dict, extra: dict):
    """Rebuild a quantized generator of class ``cls`` from its saved state (the counterpart of
    ``cls._load_state`` for directories whose ``config.json`` has a ``quantization`` entry)."""
    info = config["quantization"]
    _check_mode(info.get("mode"))
    tensors = dict(tensors)
    for head, emb in info.get("tied", {}).items():
        for suffix in ("qweight", "scale"):
            tensors[f"{head}.{suffix}"] = tensors[f"{emb}.{suffix}"]
    fp32 = {}
    names = set(info.get("linear", [])) | set(info.get("embedding", []))
    for key, value in tensors.items():
        layer, _, suffix = key.rpartition(".")
        if layer in names and suffix == "qweight":
            fp32[f"{layer}.weight"] = value.float() * tensors[f"{layer}.scale"].float()[:, None]
        elif not (layer in names and suffix == "scale"):
            fp32[key] = value
    gen = cls._load_state(config, fp32, extra)  # the fp32 skeleton
    gen.model_ = gen.model_.cpu().eval()
    if hasattr(gen, "device"):
        gen.device = "cpu"
    gen.quantization_ = quantize_model(gen.model_, mode=info["mode"], embeddings=bool(info.get("embedding")))
    if sorted(gen.quantization_["linear"]) != sorted(info.get("linear", [])):
        raise InputFormatError("quantized layers in config.json do not match the model")
    own = gen.model_.state_dict()
    exact = {k: v for k, v in tensors.items() if k in own}
    gen.model_.load_state_dict(exact, strict=False)  # the stored int8 tensors, bit for bit
    for m in gen.model_.modules():
        if isinstance(m, DynamicInt8Linear):
            m.refresh()
    return gen


# ---------------------------------------------------------------------- closeness to fp32
def next_token_distance(reference, quantized, input_ids) -> dict:
    """Distance between the next-token distributions of two causal-LM generators on the
    prefixes ``input_ids`` (B, T) (every position counts): ``{"mean_kl": mean KL(ref || quant)
    in nats, "max_kl", "max_abs_prob_diff", "top1_agreement"}``."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)  # (B, T)
    with torch.inference_mode():
        lp = torch.log_softmax(reference.model_.cpu()(input_ids=ids).logits.double(), dim=-1)  # (B, T, V)
        lq = torch.log_softmax(quantized.model_(input_ids=ids).logits.double(), dim=-1)  # (B, T, V)
    kl = (lp.exp() * (lp - lq)).sum(-1)  # (B, T)
    return {"mean_kl": float(kl.mean()), "max_kl": float(kl.max()),
            "max_abs_prob_diff": float((lp.exp() - lq.exp()).abs().max()),
            "top1_agreement": float((lp.argmax(-1) == lq.argmax(-1)).double().mean())}
