"""int8 weights for generation: a Linear whose weights take one byte each."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F


class Int8Linear(nn.Module):
    """A Linear for generation whose weights are int8, one scale per output row ("weight-only" quantization).

    Generating one character reads every weight once, so the bytes per weight set the speed: 1 here, 2 in bf16,
    4 in float32. Activations stay bf16. Measured: the default weights' val loss is unchanged (see bench/README.md).
    Many positions at once (a prompt, a cache rebuild past block_size) go through a bf16 matmul of the same int8
    values instead: torch's int8 kernel costs the same for each row, a bf16 matmul shares the work between them
    (a 63-character rebuild of the default weights: about 6 ms against 8; a short prompt pays about 1 ms more).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()  # (out, in)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,) the largest weight of each row maps to 127
        self.register_buffer("weight", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))

    def forward(self, x):  # (B, T, in) -> (B, T, out)
        if x.size(1) > 1:  # T positions: a prompt or a rebuild. Decoding feeds one per row, alone or in a crowd
            y = F.linear(x, self.weight.to(x.dtype)) * self.scale
        else:
            y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.size(-1)), self.weight, self.scale)
            y = y.view(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias

    @staticmethod
    def fits(linear: nn.Linear) -> bool:
        # torch's CPU kernel reads the input 16 values at a time: other widths give wrong results (or crash)
        return linear.in_features % 16 == 0 and hasattr(torch.ops.aten, "_weight_int8pack_mm")
