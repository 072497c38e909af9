"""`ClassCountEmbedding`: a diffusers U-Net's class embedding for (class, packet count) pairs.

NetDiffus with ``count_condition=True`` models a flow's packet count explicitly instead of letting
it emerge from near-padding pixels: the count ``n`` is drawn from the class's training counts and
the U-Net generates the image given the class *and* ``n``. The pair's embedding is the sum of a
class vector and a count vector, so a rare (class, count) pair shares strength with every flow of
its class and every flow of its length. It sits in ``UNet2DModel.class_embedding`` (whose output
the U-Net adds to its timestep embedding) and reads one integer id per image::

    id = c * W + (n - 1)      class c in [0, C), n packets in [1, W]
    id = C * W                the null condition of classifier-free guidance

The null id maps to the class table's row ``C`` plus the count table's row ``W``.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class ClassCountEmbedding(nn.Module):
    def __init__(self, n_classes: int, width: int, dim: int):
        super().__init__()
        self.n_classes, self.width = int(n_classes), int(width)
        self.class_table = nn.Embedding(self.n_classes + 1, dim)  # (C + 1, D), row C: null
        self.count_table = nn.Embedding(self.width + 1, dim)  # (W + 1, D), row W: null
        for table in (self.class_table, self.count_table):  # the sum has unit variance, as nn.Embedding's rows
            nn.init.normal_(table.weight, std=1.0 / math.sqrt(2.0))

    @property
    def null_id(self) -> int:
        return self.n_classes * self.width

    def ids(self, class_ids, packet_counts) -> torch.Tensor:
        """(B,) ids of classes ``class_ids`` (B,) with ``packet_counts`` (B,) packets (1..W)."""
        c = torch.as_tensor(class_ids, dtype=torch.long)
        n = torch.as_tensor(packet_counts, dtype=torch.long)
        if torch.any((n < 1) | (n > self.width)) or torch.any((c < 0) | (c >= self.n_classes)):
            raise ValueError(f"class ids must be in [0, {self.n_classes}) and packet counts in [1, {self.width}]")
        return c * self.width + (n - 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B,) ids -> (B, D) embeddings."""
        null = ids == self.null_id
        c = torch.where(null, self.n_classes, ids // self.width)  # (B,)
        k = torch.where(null, self.width, ids % self.width)  # (B,)
        return self.class_table(c) + self.count_table(k)  # (B, D)


__all__ = ["ClassCountEmbedding"]
