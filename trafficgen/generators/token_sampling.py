"""Drawing tokens from logits in the causal-LM decode loops (and the CVAE's): temperature, top-k,
top-p and a blocked inverse-CDF draw with one seeded uniform per row, so the same seed gives the
same tokens bit for bit on the CPU; and the decode dtypes."""
from __future__ import annotations

from trafficgen.errors import ConfigError


def decode_dtype(name: str):
    """``"float32"`` / ``"bfloat16"`` -> the torch dtype; anything else raises ConfigError."""
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if name not in table:
        raise ConfigError(f"dtype must be one of {', '.join(table)}, got {name!r}")
    return table[name]


def sample_from_logits(logits, generator, temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None, u=None):
    """(B, V) logits (any float dtype; probabilities are fp32) -> (B,) indices. ``temperature == 0``
    is greedy. One uniform per row (inverse CDF): ``u`` ``(B, 1)`` in [0, 1) if given, else drawn
    from ``generator``, so results depend only on the seed."""
    import torch

    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, int(top_k), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -torch.inf)
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)  # (B, V): fp32 even for bf16 logits
    if top_p is not None and top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)  # (B, V)
        drop = (sorted_p.cumsum(dim=-1) - sorted_p) >= top_p  # keeps at least the top one
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return inverse_cdf_sample(probs, generator, u=u)


def inverse_cdf_sample(weights, generator, block: int = 64, u=None):
    """(B, V) non-negative weights -> (B,) indices drawn with probability proportional to them.

    One uniform per row (``u`` ``(B, 1)`` in [0, 1), or drawn from ``generator``). Two-level inverse CDF: pick a block of ``block`` entries from the
    block sums, then the entry inside it. A row-wise ``cumsum`` over thousands of entries is
    sequential and dominated decoding time; block sums vectorise.
    """
    import torch
    import torch.nn.functional as F

    b, v = weights.shape
    pad = (-v) % block
    w = (F.pad(weights, (0, pad)) if pad else weights).view(b, -1, block)  # (B, nb, blk)
    nb = w.shape[1]
    bsum = w.sum(-1)  # (B, nb)
    bcdf = bsum.cumsum(-1)  # (B, nb)
    if u is None:
        u = torch.rand((b, 1), generator=generator, device=weights.device)  # (B, 1)
    u = u.to(bcdf.dtype) * bcdf[:, -1:]  # (B, 1)
    last_blk = torch.where(bsum > 0, torch.arange(nb, device=w.device), 0).amax(-1, keepdim=True)  # (B, 1)
    j = torch.minimum(torch.searchsorted(bcdf, u, right=True), last_blk)  # (B, 1)
    prev = torch.where(j > 0, bcdf.gather(1, (j - 1).clamp_min(0)), 0.0)  # (B, 1)
    inner = w.gather(1, j[..., None].expand(b, 1, block)).squeeze(1)  # (B, blk)
    last_in = torch.where(inner > 0, torch.arange(block, device=w.device), 0).amax(-1, keepdim=True)  # (B, 1)
    k = torch.minimum(torch.searchsorted(inner.cumsum(-1), u - prev, right=True), last_in)  # (B, 1)
    return (j * block + k).squeeze(1)

