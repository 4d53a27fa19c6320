"""nanoGPT's CPU recipe, restated by us as the baseline `bench/time_to_quality.py --vs-nanogpt` races against.

The recipe is the one nanoGPT's README gives for a laptop CPU:

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
        --lr_decay_iters=2000 --dropout=0.0

with the rest from config/train_shakespeare_char.py and train.py's defaults: AdamW, lr 1e-3 with 100 warmup
steps then cosine to 1e-4 at step 2000, beta2 0.99, weight decay 0.1 on matrices and embeddings only, gradient
clipping at 1.0, no biases, float32 on the CPU (train.py autocasts only on CUDA), an evaluation every 250 steps
on 20 random batches per split with a checkpoint saved when val improves. Its model.py: pre-norm blocks, one
fused c_attn for q, k, v with scaled_dot_product_attention, a GELU MLP 4x wide, learned positions, the token
embedding tied to the output head, weights drawn N(0, 0.02) with the residual projections scaled down by
sqrt(2 * n_layer). The loop below keeps train.py's order: evaluate, then forward, fetch the next batch, backward,
clip, step, and stop after iteration max_iters. Written from those descriptions, not copied.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000, lr_decay_iters=2000,
              dropout=0.0, bias=False, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, beta1=0.9, beta2=0.99,
              weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_iters=20, seed=1337)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nn.LayerNorm could not turn it off)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout, bias):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v for all heads in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.dropout = n_head, dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd, dropout, bias):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, dropout, bias):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = LayerNorm(n_embd, bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab_size, n_layer, n_head, n_embd, block_size, dropout, bias):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd), drop=nn.Dropout(dropout),
            h=nn.ModuleList([Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)]),
            ln_f=LayerNorm(n_embd, bias)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        B, T = idx.size()
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                                            ignore_index=-1)
        return logits, loss


def get_lr(it: int, r: dict) -> float:
    if it < r["warmup_iters"]:
        return r["learning_rate"] * (it + 1) / (r["warmup_iters"] + 1)
    if it > r["lr_decay_iters"]:
        return r["min_lr"]
    ratio = (it - r["warmup_iters"]) / (r["lr_decay_iters"] - r["warmup_iters"])
    return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["learning_rate"] - r["min_lr"])


def train(splits: dict[str, torch.Tensor], vocab_size: int, recipe: dict = RECIPE) -> dict:
    """Train by the recipe on the given train/val token tensors; evaluations stamped with wall-clock seconds."""
    r = recipe
    started = time.perf_counter()
    torch.manual_seed(r["seed"])

    def get_batch(split):
        data = splits[split]
        ix = torch.randint(len(data) - r["block_size"], (r["batch_size"],))
        x = torch.stack([data[i:i + r["block_size"]] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + r["block_size"]] for i in ix])
        return x, y

    @torch.no_grad()
    def estimate_loss():
        out = {}
        model.eval()
        for split in ("train", "val"):
            losses = torch.zeros(r["eval_iters"])
            for k in range(r["eval_iters"]):
                _, loss = model(*get_batch(split))
                losses[k] = loss.item()
            out[split] = losses.mean().item()
        model.train()
        return out

    model = NanoGPT(vocab_size, r["n_layer"], r["n_head"], r["n_embd"], r["block_size"], r["dropout"], r["bias"])
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": r["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=r["learning_rate"], betas=(r["beta1"], r["beta2"]))
    evals, best_val = [], 1e9
    with tempfile.TemporaryDirectory() as out_dir:
        setup = time.perf_counter() - started
        t_start = time.perf_counter()
        X, Y = get_batch("train")
        iter_num = 0
        while True:
            lr = get_lr(iter_num, r)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if iter_num % r["eval_interval"] == 0:
                elapsed = time.perf_counter() - t_start
                losses = estimate_loss()
                evals.append({"step": iter_num, "elapsed": elapsed, "train_loss": losses["train"],
                              "val_loss": losses["val"]})
                if losses["val"] < best_val:
                    best_val = losses["val"]
                    if iter_num > 0:
                        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "iter_num": iter_num, "best_val_loss": best_val}, Path(out_dir) / "ckpt.pt")
            _, loss = model(X, Y)
            X, Y = get_batch("train")  # the next batch, fetched while (on a GPU) the backward pass would run
            loss.backward()
            if r["grad_clip"] != 0.0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()  # log_interval=1: the loss is read every iteration
            iter_num += 1
            if iter_num > r["max_iters"]:
                break
        elapsed = time.perf_counter() - t_start
    return {"setup_s": setup, "steps": iter_num, "elapsed_s": elapsed, "evals": evals, "model": model.eval()}
