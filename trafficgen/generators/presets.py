"""Size presets of the sequence generators (keyword arguments of the transformers configs).

With the full signed-MTU vocabulary of :class:`~trafficgen.representations.tokenizer.FlowTokenizer`
(3002 + classes tokens), "small" is about 1.8M parameters for both architectures:

* llama small: 4 layers x (4*128^2 attention + 3*128*512 MLP) = 1.05M, + 2 x 3025x128 untied
  embedding / LM head = 0.77M.
* mamba small: 10 Mamba2 layers of ~105k (in_proj 128->552, out_proj 256->128, conv, norms),
  + the same embedding / head.

"tiny" (2 layers, width 32) is for tests.
"""
from __future__ import annotations

from trafficgen.errors import ConfigError

LLAMA_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=64),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                  intermediate_size=512),
    "base": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8,
                 intermediate_size=1024),
}

MAMBA_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, expand=2, num_heads=4, head_dim=16, state_size=8,
                 n_groups=1, conv_kernel=4),
    "small": dict(hidden_size=128, num_hidden_layers=10, expand=2, num_heads=8, head_dim=32, state_size=16,
                  n_groups=1, conv_kernel=4),
    "base": dict(hidden_size=256, num_hidden_layers=12, expand=2, num_heads=16, head_dim=32, state_size=32,
                 n_groups=1, conv_kernel=4),
}


def get_preset(table: dict[str, dict], name: str) -> dict:
    """A copy of preset ``name``; unknown names raise :class:`ConfigError` listing the known ones."""
    try:
        return dict(table[name])
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(table)}") from None
