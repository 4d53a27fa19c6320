"""The lecture's model, tensor for tensor, as a GPT-2 (transformers' GPT2LMHeadModel): names, layout and back.

GPT-2 with ReLU instead of GELU, untied embeddings and a zero bias on q/k/v is exactly our GPTLanguageModel:

    token_embedding_table / position_embedding_table  ->  transformer.wte / transformer.wpe
    blocks.i.ln1, sa.qkv, sa.proj, ln2                ->  transformer.h.i.ln_1, attn.c_attn, attn.c_proj, ln_2
    blocks.i.ffwd.net.0, ffwd.net.2                   ->  transformer.h.i.mlp.c_fc, mlp.c_proj
    ln_f, lm_head                                     ->  transformer.ln_f, lm_head

GPT-2's Conv1D stores a weight as (in, out), nn.Linear as (out, in): transposed. GPT-2's lm_head has no bias and
ours may: logits = W·LN(h) + b, and ln_f's bias β enters them as W·β, so a β' with W·β' = W·β + b gives the same
logits. It exists when b lies in W's column space (always when W, vocab x n_embd, has full row rank); found by
least squares and refused when the residual is not tiny. Only torch here: the export's libraries are export_folder.py's.
"""

from __future__ import annotations

import torch

from gpt.config import GPTConfig
from gpt.errors import ExportError, WeightsError

MAX_FOLD_ERROR = 1e-5  # the largest logit change folding lm_head's bias into ln_f may cause (measured, refused above)


def hf_config(config: GPTConfig) -> dict:
    """The GPT2Config fields of our model (config.json holds them beside our own: both read the same file)."""
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_embd": config.n_embd,
        "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": 4 * config.n_embd,
        "activation_function": "relu", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": False,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,  # inference: dropout off
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,  # characters only, no special tokens
        "scale_attn_weights": True, "use_cache": True,
    }


def _ours_to_gpt2(config: GPTConfig) -> list[tuple[str, str, bool]]:
    """(our name, GPT-2's name, transposed) for every tensor our model of this config has."""
    names = [("token_embedding_table.weight", "transformer.wte.weight", False),
             ("position_embedding_table.weight", "transformer.wpe.weight", False)]
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        pairs = [("ln1", "ln_1", False), ("sa.qkv", "attn.c_attn", True), ("sa.proj", "attn.c_proj", True),
                 ("ln2", "ln_2", False), ("ffwd.net.0", "mlp.c_fc", True), ("ffwd.net.2", "mlp.c_proj", True)]
        for a, b, transposed in pairs:
            names.append((f"{ours}{a}.weight", f"{theirs}{b}.weight", transposed))
            if config.bias and a != "sa.qkv":
                names.append((f"{ours}{a}.bias", f"{theirs}{b}.bias", False))
    names.append(("ln_f.weight", "transformer.ln_f.weight", False))
    names.append(("lm_head.weight", "lm_head.weight", False))
    return names


def fold_lm_head_bias(W: torch.Tensor, beta: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(β', largest |W·β' - (W·β + b)|): ln_f's bias that carries lm_head's bias b, and what it misses by."""
    W64, target = W.double(), W.double() @ beta.double() + b.double()  # (V, C), (V,)
    folded = torch.linalg.lstsq(W64, target[:, None]).solution[:, 0]  # (C,)
    return folded.to(beta.dtype), (W64 @ folded - target).abs().max().item()


def to_gpt2(state: dict[str, torch.Tensor], config: GPTConfig) -> tuple[dict[str, torch.Tensor], float]:
    """Our state dict as GPT2LMHeadModel's, and the largest logit change it causes (0 without lm_head's bias).

    Raises ExportError when lm_head's bias cannot be carried by ln_f's (the one thing GPT-2 cannot say)."""
    out, C = {}, config.n_embd
    for ours, theirs, transposed in _ours_to_gpt2(config):
        t = state[ours].detach().float().cpu()
        out[theirs] = (t.t() if transposed else t).contiguous()
    zeros = lambda n: torch.zeros(n)  # noqa: E731 - GPT-2's biases that our model does not have
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        out[h + "attn.c_attn.bias"] = zeros(3 * C)  # q/k/v never have a bias in the lecture
        if not config.bias:
            for name, n in (("ln_1", C), ("attn.c_proj", C), ("ln_2", C), ("mlp.c_fc", 4 * C), ("mlp.c_proj", C)):
                out[f"{h}{name}.bias"] = zeros(n)
    error = 0.0
    beta = state["ln_f.bias"].float().cpu() if config.bias else zeros(C)
    if config.bias and state["lm_head.bias"].abs().max() > 0:
        beta, error = fold_lm_head_bias(out["lm_head.weight"], beta, state["lm_head.bias"].float().cpu())
        if error > MAX_FOLD_ERROR:
            raise ExportError(
                f"GPT-2 has no bias on lm_head and this model's ({config.vocab_size} characters) cannot be moved into "
                f"ln_f's: n_embd {C} is too narrow for it (the logits would change by up to {error:.2g}); a model "
                f"without biases (bias false) or with n_embd >= {config.vocab_size} exports exactly")
    out["transformer.ln_f.bias"] = beta.contiguous()
    return out, error


def is_gpt2(state: dict[str, torch.Tensor]) -> bool:
    return "transformer.wte.weight" in state


def from_gpt2(state: dict[str, torch.Tensor], config: GPTConfig, where) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel state dict (as to_gpt2 wrote it) as ours again: the same logits.

    A model with biases gets lm_head's as zero (it was folded into ln_f's); one without needs GPT-2's to be zero."""
    out, mapping = {}, _ours_to_gpt2(config)
    mapped = {theirs for _, theirs, _ in mapping}
    try:
        for ours, theirs, transposed in mapping:
            t = state[theirs]
            out[ours] = (t.t() if transposed else t).contiguous()
        extra = [k for k in state if k.endswith(".bias") and k not in mapped]
        if config.bias:
            out["ln_f.bias"] = state["transformer.ln_f.bias"]
            out["lm_head.bias"] = torch.zeros(config.vocab_size, dtype=state["lm_head.weight"].dtype)
            extra = [k for k in extra if k != "transformer.ln_f.bias"]
        if any(state[k].abs().max() > 0 for k in extra):  # biases our model has no place for
            raise WeightsError(f"{where} has GPT-2 biases that a model with bias {str(config.bias).lower()} cannot "
                               f"hold: it was not written by this project")
    except KeyError as e:
        raise WeightsError(f"{where} lacks {e.args[0]}: it does not match its config.json") from None
    return out
