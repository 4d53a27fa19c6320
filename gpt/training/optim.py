"""The optimizer: AdamW (the lecture's and nanoGPT's), or Muon for the Blocks' matrices with AdamW for the rest.

Muon (torch.optim.Muon) orthogonalises each update of a weight matrix with a few Newton-Schulz iterations, so
every direction of the matrix learns at the same rate: fewer steps to the same loss. It is meant for the hidden
matrices only, so the embeddings, the lm_head, LayerNorm gains and biases stay with AdamW, as its authors advise.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gpt.device import fast_bf16

OPTIMIZERS = ("auto", "adamw", "muon")


def resolve(name: str, device) -> str:
    """The optimizer "auto" stands for on device: Muon where bf16 matmuls are native, else AdamW.

    torch.optim.Muon runs its Newton-Schulz iterations in bf16; where bf16 is emulated they dominate the step.
    Measured (cpu preset, 2-core AMD EPYC without bf16, `python -m train --preset cpu --optimizer X --max-iters 20`):
    Muon 1,808 tokens/s against AdamW's 12,964, so in any given time AdamW gets much further there.
    """
    if name != "auto":
        return name
    return "muon" if fast_bf16(torch.device(device)) else "adamw"


def adamw(params: list[nn.Parameter], lr: float, weight_decay: float, betas: tuple[float, float],
          fused: bool = False) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only: decaying biases and LayerNorm gains only hurts."""
    decay = [p for p in params if p.dim() >= 2]  # matmul weights and embeddings
    no_decay = [p for p in params if p.dim() < 2]  # biases and LayerNorm gains
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, fused=fused)


class MuonWithAdamW:
    """Muon for the 2-D weights inside the Blocks, AdamW for every other parameter: one optimizer to the trainer.

    param_groups lists AdamW's groups then Muon's, whose `lr_scale` (muon_lr / lr) the trainer applies to the
    scheduled rate; state_dict() is one torch-style dict (parameters numbered AdamW's first), so --resume restores
    both.
    """

    def __init__(self, model: nn.Module, lr: float, muon_lr: float, weight_decay: float,
                 betas: tuple[float, float], fused: bool = False):
        blocks = {id(p) for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2}
        matrices = [p for p in model.parameters() if id(p) in blocks]
        self.adamw = adamw([p for p in model.parameters() if id(p) not in blocks], lr, weight_decay, betas, fused)
        self.muon = torch.optim.Muon(matrices, lr=muon_lr, weight_decay=weight_decay, momentum=0.95)
        self.muon.param_groups[0]["lr_scale"] = muon_lr / lr  # one schedule for both: warmup, then decay
        self.param_groups = self.adamw.param_groups + self.muon.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none)
        self.muon.zero_grad(set_to_none)

    def step(self) -> None:
        self.adamw.step()
        self.muon.step()

    def state_dict(self) -> dict:
        first, second = self.adamw.state_dict(), self.muon.state_dict()
        n = sum(len(g["params"]) for g in first["param_groups"])  # Muon's parameters are numbered after AdamW's
        return {"state": {**first["state"], **{i + n: s for i, s in second["state"].items()}},
                "param_groups": first["param_groups"]
                + [{**g, "params": [i + n for i in g["params"]]} for g in second["param_groups"]]}

    def load_state_dict(self, state: dict) -> None:
        k = len(self.adamw.param_groups)
        n = sum(len(g["params"]) for g in self.adamw.param_groups)
        groups = state["param_groups"]
        self.adamw.load_state_dict({"state": {i: s for i, s in state["state"].items() if i < n},
                                    "param_groups": groups[:k]})
        self.muon.load_state_dict({"state": {i - n: s for i, s in state["state"].items() if i >= n},
                                   "param_groups": [{**g, "params": [i - n for i in g["params"]]}
                                                    for g in groups[k:]]})
        self.param_groups = self.adamw.param_groups + self.muon.param_groups


def build_optimizer(model: nn.Module, name: str, lr: float, muon_lr: float, weight_decay: float,
                    betas: tuple[float, float], fused: bool = False):
    """The optimizer called `name` (one of OPTIMIZERS) over the model's parameters."""
    if name == "auto":
        raise ValueError("resolve() the optimizer for its device first")
    if name == "muon":
        return MuonWithAdamW(model, lr, muon_lr, weight_decay, betas, fused)
    return adamw(list(model.parameters()), lr, weight_decay, betas, fused)
