import math

import pytest
import torch
import torch.nn as nn

from gpt import ConfigError, GPT, GPTConfig
from gpt.model import Head, MultiHeadAttention, attention


def small_config(**overrides) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0), **overrides})


def test_config_explains_n_embd_not_divisible_by_n_head():
    with pytest.raises(ConfigError, match=r"n_embd \(100\) must be divisible by n_head \(6\)"):
        GPTConfig(n_embd=100, n_head=6)


@pytest.mark.parametrize("field, value", [("block_size", 0), ("n_layer", -1), ("vocab_size", "65"),
                                          ("n_head", 2.5), ("dropout", 1.0), ("dropout", -0.1), ("bias", "yes"),
                                          ("n_embd", True)])
def test_config_rejects_impossible_values_by_name(field, value):
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**{field: value})


def test_lecture_model_has_the_lecture_parameter_count():
    # the lecture prints "10.788929 M parameters" for its final model
    assert GPT(GPTConfig(vocab_size=65)).num_params() == 10_788_929


@pytest.mark.parametrize("bias", [True, False])
def test_the_parameter_count_is_known_before_building(bias):
    from gpt.model import param_count

    for config in (GPTConfig(bias=bias), GPTConfig(vocab_size=7, block_size=9, n_layer=3, n_head=2, n_embd=10, bias=bias)):
        assert param_count(config) == GPT(config).num_params()


def test_forward_returns_logits_and_loss_as_in_the_lecture():
    torch.manual_seed(0)
    model = GPT(small_config())
    idx = torch.randint(65, (3, 16))
    logits, loss = model(idx)
    assert logits.shape == (3, 16, 65) and loss is None
    logits, loss = model(idx, targets=torch.randint(65, (3, 16)))
    assert loss.shape == () and abs(loss.item() - math.log(65)) < 0.1  # a fresh model is close to uniform


def test_context_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        GPT(small_config())(torch.zeros(1, 17, dtype=torch.long))


class LectureMultiHeadAttention(nn.Module):
    """The lecture's MultiHeadAttention: a list of Heads, concatenated, then projected."""

    def __init__(self, config):
        super().__init__()
        self.heads = nn.ModuleList([Head(config, config.head_size) for _ in range(config.n_head)])
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))


@pytest.mark.parametrize("T", [1, 7, 16])
def test_fused_attention_equals_the_lectures_per_head_attention(T):
    torch.manual_seed(0)
    config = small_config()
    fused = MultiHeadAttention(config).eval()
    lecture = LectureMultiHeadAttention(config).eval()
    C, hs = config.n_embd, config.head_size
    wq, wk, wv = fused.qkv.weight.split(C, dim=0)  # each (C, C): rows hs*h .. hs*(h+1) belong to head h
    with torch.no_grad():
        for h, head in enumerate(lecture.heads):
            head.query.weight.copy_(wq[h * hs:(h + 1) * hs])
            head.key.weight.copy_(wk[h * hs:(h + 1) * hs])
            head.value.weight.copy_(wv[h * hs:(h + 1) * hs])
        lecture.proj.load_state_dict(fused.proj.state_dict())
    x = torch.randn(4, T, C)
    torch.testing.assert_close(fused(x), lecture(x), rtol=1e-5, atol=1e-6)


def test_attention_under_cpu_autocast_is_the_lectures_and_drops_out_only_when_asked():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))  # (B, nh, T, hs)
    wei = (q @ k.transpose(-2, -1) * 8 ** -0.5).masked_fill(torch.ones(16, 16).tril() == 0, float("-inf"))
    expected = wei.softmax(dim=-1) @ v  # Head's formula, float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, dropped = attention(q, k, v), attention(q, k, v, dropout_p=0.5)
    torch.testing.assert_close(plain.float(), expected, rtol=0.02, atol=0.02)  # bf16: 2-3 significant digits
    assert not torch.allclose(dropped.float(), plain.float(), atol=0.05)


def test_changing_a_later_token_never_changes_earlier_logits():
    torch.manual_seed(0)
    model = GPT(small_config()).eval()
    idx = torch.randint(65, (2, 16))
    base, _ = model(idx)
    for t in (0, 5, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 65
        logits, _ = model(changed)
        torch.testing.assert_close(logits[:, :t], base[:, :t], rtol=0, atol=1e-6)  # the past cannot see it
        assert not torch.allclose(logits[:, t], base[:, t])  # position t itself does


def test_training_under_cpu_bf16_autocast_matches_float32():
    # under CPU autocast the attention is Head's, written out in bf16 (faster there): loss and gradients stay close
    torch.manual_seed(0)
    model = GPT(small_config())
    idx, targets = torch.randint(65, (4, 16)), torch.randint(65, (4, 16))
    _, loss = model(idx, targets)
    loss.backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, half = model(idx, targets)
    half.backward()
    assert abs(half.item() - loss.item()) < 0.01
    full, half_grads = torch.cat([g.flatten() for g in full]), torch.cat([p.grad.flatten() for p in model.parameters()])
    assert (half_grads - full).norm() < 0.05 * full.norm()  # bf16 keeps 2-3 significant digits
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 65
    with torch.autocast("cpu", dtype=torch.bfloat16):
        base, after = model(idx)[0], model(changed)[0]
    assert torch.equal(after[:, :10], base[:, :10])  # still causal: the past cannot see a later token
    assert not torch.equal(after[:, 10], base[:, 10])
