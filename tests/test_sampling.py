import copy
from pathlib import Path

import pytest
import torch

from gpt import GPT, CharTokenizer, GPTConfig, SamplingError, UnknownCharactersError
from gpt.generation import precision as precision_module
from gpt.generation.decode import generate_text, generate_tokens, stream_text
from gpt.generation.int8 import Int8Linear
from gpt.generation.kv_cache import KVCache
from gpt.generation.precision import inference_model, precision
from gpt.generation.sampling import Settings, sample, seeded


from conftest import VOCAB, small_gpt


@pytest.fixture
def model() -> GPT:
    # float64 so greedy choices are far from float ties, and wide random matrices so that the next token
    # depends strongly on the context (a fresh model at the usual init predicts the same token everywhere)
    return small_gpt(weight_std=0.5, dtype=torch.float64)


@torch.no_grad()
def lecture_generate(model, idx, max_new_tokens):
    """The lecture's generate, greedy: recompute the whole (cropped) context at every step."""
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        idx = torch.cat((idx, logits[:, -1, :].argmax(dim=-1, keepdim=True)), dim=1)
    return idx


def cached(model, idx, n, **kwargs):
    return torch.stack(list(generate_tokens(model, idx, n, temperature=0, **kwargs)), dim=1)


def test_kv_cache_logits_match_the_full_forward_pass(model):
    idx = torch.randint(len(VOCAB), (2, 16))
    full, _ = model(idx)
    cache = KVCache(model.config, 2, dtype=torch.float64)
    pieces = [model(idx[:, :5], cache=cache)[0]]  # prefill
    pieces += [model(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]  # one position at a time
    pieces.append(model(idx[:, 12:], cache=cache)[0])  # several new positions after a filled cache
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-9, atol=1e-9)


def test_kv_cache_matches_full_recompute_within_one_window(model):
    idx = torch.randint(len(VOCAB), (3, 5))
    n = model.config.block_size - 5  # fills the window exactly
    expected = lecture_generate(model, idx, n)[:, 5:]
    assert all(len(set(row.tolist())) > 3 for row in expected)  # the context matters: a meaningful comparison
    assert torch.equal(cached(model, idx, n), expected)


def test_generation_goes_on_past_block_size(model):
    idx = torch.randint(len(VOCAB), (2, 3))
    n = 5 * model.config.block_size
    tokens = cached(model, idx, n)
    assert tokens.shape == (2, n)
    # with a full-window rebuild at every step it is exactly the lecture's sliding window
    assert torch.equal(cached(model, idx, n, rebuild=model.config.block_size), lecture_generate(model, idx, n)[:, 3:])
    # the default rebuild keeps half the window: identical until the window first fills
    assert torch.equal(tokens[:, :13], lecture_generate(model, idx, 13)[:, 3:])


def test_prompt_longer_than_block_size_uses_its_last_block(model):
    idx = torch.randint(len(VOCAB), (1, 40))
    assert torch.equal(cached(model, idx, 10, rebuild=16), lecture_generate(model, idx, 10)[:, 40:])


def test_seed_repeats_the_text_and_leaves_the_global_rng_alone(model):
    state = torch.get_rng_state()
    a = generate_text(model, "ROMEO:", max_new_tokens=50, seed=1)
    b = generate_text(model, "ROMEO:", max_new_tokens=50, seed=1)
    c = generate_text(model, "ROMEO:", max_new_tokens=50, seed=2)
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), state)


def test_stream_text_yields_one_character_at_a_time(model):
    pieces = list(stream_text(model, "To be", max_new_tokens=30, seed=3))
    assert len(pieces) == 30 and all(len(p) == 1 for p in pieces)
    assert "".join(pieces) == generate_text(model, "To be", max_new_tokens=30, seed=3)[0]


def test_several_samples_at_once(model):
    samples = generate_text(model, "A", num_samples=4, max_new_tokens=25, seed=0)
    assert len(samples) == 4 and all(len(s) == 25 for s in samples)
    assert len(set(samples)) > 1  # one batch, independent samples


def test_empty_prompt_starts_from_a_newline(model):
    assert generate_text(model, "", max_new_tokens=20, temperature=0) == \
        generate_text(model, "\n", max_new_tokens=20, temperature=0)


def test_top_k_one_and_tiny_top_p_are_greedy_and_top_k_is_clamped(model):
    greedy = generate_text(model, "KING", max_new_tokens=40, temperature=0)
    assert generate_text(model, "KING", max_new_tokens=40, top_k=1, seed=5) == greedy
    assert generate_text(model, "KING", max_new_tokens=40, top_p=1e-9, seed=5) == greedy
    assert len(generate_text(model, "KING", max_new_tokens=40, top_k=10_000, seed=5)[0]) == 40


def test_top_k_and_top_p_only_sample_from_the_allowed_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    g = [seeded(0)] * len(logits)  # one generator may serve every row

    def drawn(**settings):
        return set(sample(logits, [Settings(**settings)] * len(logits), g))
    assert drawn(top_k=2) == {0, 1}
    # softmax: 0.636, 0.234, 0.086, ... -> top_p 0.8 keeps the first two, top_p 0.9 the first three
    assert drawn(top_p=0.8) == {0, 1}
    assert drawn(top_p=0.9) == {0, 1, 2}


def test_a_crowd_samples_each_row_from_its_own_settings_and_distribution():
    """The sampler: each row its own temperature, top-k, top-p and generator."""
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    kinds = [dict(top_k=2), dict(top_p=0.8), dict(top_p=0.9), dict(temperature=0.0), dict()]
    settings = [Settings(**kind) for kind in kinds * 800]
    generators = [seeded(i) for i in range(len(settings))]
    tokens = torch.tensor(sample(logits.repeat(len(settings), 1), settings, generators)).view(800, len(kinds))
    assert set(tokens[:, 0].tolist()) == {0, 1}
    assert set(tokens[:, 1].tolist()) == {0, 1}  # softmax 0.636, 0.234, 0.086, ...: top_p 0.8 keeps two
    assert set(tokens[:, 2].tolist()) == {0, 1, 2}
    assert set(tokens[:, 3].tolist()) == {0}  # greedy
    frequencies = torch.bincount(tokens[:, 4], minlength=5) / 800  # plain sampling follows the softmax
    assert torch.allclose(frequencies, logits.softmax(-1)[0], atol=0.05), frequencies
    # a row's token depends on its own generator only, not on the rows around it
    plain = Settings()
    assert sample(logits, [plain], [seeded(3)]) == sample(logits.repeat(3, 1), [plain] * 3,
                                                          [seeded(9), seeded(3), seeded(1)])[1:2]


def test_unknown_characters_in_the_prompt_are_reported(model):
    with pytest.raises(UnknownCharactersError, match="'é'"):
        stream_text(model, "Café")


@pytest.mark.parametrize("settings", [dict(temperature=-1), dict(top_k=-3), dict(top_p=0), dict(top_p=1.5),
                                      dict(max_new_tokens=-1), dict(num_samples=0), dict(rebuild=99)])
def test_settings_out_of_range_are_explained(model, settings):
    with pytest.raises(SamplingError):
        generate_text(model, "A", **{"max_new_tokens": 5, **settings})


def test_inference_model_in_float32_is_the_model_itself(model, monkeypatch):
    assert inference_model(model, "float32") is model  # full precision: exactly the tests above
    model = copy.deepcopy(model).float()
    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: False)
    assert inference_model(model, "auto") is model  # no native bf16 here: nothing changes
    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)
    assert precision(inference_model(model, "auto")) == precision_module.fastest_precision(model)  # measured, see below
    assert precision(model) == "float32"  # the original is untouched
    with pytest.raises(SamplingError, match="dtype"):
        inference_model(model, "float16")


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_a_faster_copy_predicts_like_float32_and_writes_valid_text(dtype):
    model = GPT.from_pretrained(Path(__file__).resolve().parent.parent / "weights" / "default")
    fast = inference_model(model, dtype)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the original is untouched
    assert precision(fast) == dtype
    if dtype == "int8":  # every matmul of the blocks and the head reads int8 weights
        assert sum(isinstance(m, Int8Linear) for m in fast.modules()) == 4 * model.config.n_layer + 1
    idx = torch.tensor([CharTokenizer(model.vocab).encode("ROMEO:\nWhat say'st thou, my lord?")])
    with torch.no_grad():
        full = torch.log_softmax(model(idx)[0], dim=-1)
        half = torch.log_softmax(fast(idx)[0].float(), dim=-1)
    assert (full.exp() * (full - half)).sum(-1).max() < 0.02  # KL(fp32 || fast) per position, in nats
    text = generate_text(fast, "ROMEO:", max_new_tokens=300, temperature=0.8, top_k=40, seed=1)[0]
    assert len(text) == 300 and set(text) <= set(model.vocab)
    assert generate_text(fast, "ROMEO:", max_new_tokens=300, temperature=0.8, top_k=40, seed=1)[0] == text
    assert len(set(text.split())) > 30  # words, not one character over and over


def test_an_int8_layer_encodes_a_prompt_as_it_decodes_one_position_at_a_time():
    """Many positions (a prompt, a rebuild) take a bf16 matmul of the int8 values, one position torch's int8 kernel:
    the same weights, so the same outputs up to bf16 rounding."""
    torch.manual_seed(0)
    layer = Int8Linear(torch.nn.Linear(192, 576, bias=True))
    x = torch.randn(1, 40, 192).bfloat16()  # (B, T, C)
    many = layer(x)
    one_by_one = torch.cat([layer(x[:, t:t + 1]) for t in range(x.size(1))], dim=1)
    assert many.shape == one_by_one.shape == (1, 40, 576) and many.dtype == torch.bfloat16
    torch.testing.assert_close(many.float(), one_by_one.float(), rtol=1e-2, atol=1e-2)
    assert (many.float() - one_by_one.float()).abs().mean() < 2e-3  # values around 0.5: a rounding, no more


def test_auto_precision_is_measured_once_per_shape_and_never_slower_than_float32():
    from gpt.device import fast_bf16
    from gpt.generation.precision import fastest_precision, measured_precisions

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=64)).eval()
    choice = fastest_precision(model)
    assert precision(inference_model(model)) == choice  # "auto" is that choice
    if not fast_bf16(torch.device("cpu")):
        assert choice == "float32"  # emulated bf16 is never tried
        return
    (picked, seconds), = [v for k, v in measured_precisions().items() if ("n_embd", 64) in k[1]]
    assert picked == choice and set(seconds) == {"float32", "bfloat16", "int8"}
    assert seconds[choice] <= seconds["float32"]
    twin = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=64)).eval()
    before = dict(measured_precisions())
    assert fastest_precision(twin) == choice and measured_precisions() == before  # remembered, not re-measured


def test_the_precision_choice_is_remembered_across_processes(monkeypatch, tmp_path):
    """A seed gives the same text every time on this machine: the next process reads the choice, not a timing."""
    monkeypatch.setenv("GPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)  # measure even where bf16 is emulated
    monkeypatch.setattr(precision_module, "_FASTEST", {})
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=48)).eval()
    choice = precision_module.fastest_precision(model)
    assert precision_module.precisions_file().is_file()

    def no_timing(model, tokens=16):
        raise AssertionError("measured again")

    monkeypatch.setattr(precision_module, "_FASTEST", {})  # a new process
    monkeypatch.setattr(precision_module, "_time_generation", no_timing)
    assert precision_module.fastest_precision(model) == choice
    precision_module.precisions_file().write_text("{torn")  # unreadable: measured again, never an error
    with pytest.raises(AssertionError, match="measured again"):
        monkeypatch.setattr(precision_module, "_FASTEST", {})
        precision_module.fastest_precision(model)


# Recorded before the three samplers became one (gpt.generation.sampling.sample): a single stream, greedy decoding and the
# engine's crowd give the very tokens they gave then; several samples are now the streams of seed, seed + 1, ...
BEFORE_ONE_SAMPLER = {
    "single": "A;mIpIc;;pNYC?I??CWgW?J???N?WuD?J?C ?CWD",
    "greedy": "CF?????CCWJ?\nE??gQ?D?????Ay?JA",
    "engine": ["QFmG?WFLWyf?CCQNCFcyCx?WZEDHy?", "b?qc\n?\n??c;J?WgdJWW'yWDsstf;qD", "A;;;iHBmCM\ns?J???yCH?Cj CCSyIC"],
}


def test_every_generation_path_gives_the_tokens_it_gave_before_one_sampler_served_them_all():
    from gpt.generation.engine import Engine

    model = small_gpt(seed=0, weight_std=0.5)
    single = dict(max_new_tokens=40, temperature=0.8, top_k=10, top_p=0.9)  # 40 tokens: past block 16, rebuilt
    assert "".join(stream_text(model, "ROMEO:", **single, seed=3)) == BEFORE_ONE_SAMPLER["single"]
    assert "".join(stream_text(model, "", max_new_tokens=30, temperature=0, seed=1)) == BEFORE_ONE_SAMPLER["greedy"]
    engine = Engine(model)
    crowd = [engine.stream_text(p, max_new_tokens=30, temperature=1.1, top_p=0.95, seed=s)
             for p, s in (("a", 1), ("bb", 2), ("ROMEO:", 3))]
    assert ["".join(it) for it in crowd] == BEFORE_ONE_SAMPLER["engine"]
    several = generate_text(model, "To be", num_samples=3, max_new_tokens=30, temperature=1.0, seed=5)
    assert several == ["".join(stream_text(model, "To be", max_new_tokens=30, seed=5 + i)) for i in range(3)]
    assert len(set(several)) == 3
