import pytest
import torch

from gpt import GPT, WeightsError
from gpt.ladder import rungs as ladder
from gpt.ladder import rung_code
from gpt.generation.kv_cache import KVCache
from gpt.insides.attention import attention_image, attention_maps, prompt_maps
from gpt.generation.decode import generate_text
from gpt.training.trainer import Trainer
from conftest import VOCAB, run_main, small_gpt
from train.__main__ import main as train_main


def test_the_rungs_follow_the_lecture():
    assert [r.number for r in ladder.flight("lecture")] == [1, 2, 3, 4, 5, 6, 7]
    assert [r.lecture_val for r in ladder.flight("lecture")] == [2.5, 2.4, 2.28, 2.24, 2.08, 2.06, 1.48]
    for r in ladder.RUNGS[1:6]:  # the lecture's small settings
        c = ladder.train_config(r)
        assert (c.block_size, c.batch_size, c.n_embd, c.learning_rate, c.max_iters) == (8, 32, 32, 1e-3, 5000)
    big = ladder.train_config(ladder.RUNGS[6])
    assert (big.n_layer, big.n_head, big.n_embd, big.block_size, big.batch_size, big.dropout) == (6, 6, 384, 256, 64, 0.2)


@pytest.mark.parametrize("rung", [r.number for r in ladder.RUNGS])
def test_every_rung_is_a_causal_language_model(rung):
    torch.manual_seed(0)
    config = ladder.train_config(ladder.RUNGS[rung - 1]).model_config(len(VOCAB))
    model = ladder.build(rung, config, VOCAB).eval()
    T = min(config.block_size, 16)
    idx = torch.randint(len(VOCAB), (2, T))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, T, len(VOCAB)) and loss.item() > 0
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % len(VOCAB)
    torch.testing.assert_close(model(changed)[0][:, :-1], logits[:, :-1])  # no peeking at the future
    assert len(generate_text(model, "AB", max_new_tokens=3 * T, seed=0)[0]) == 3 * T  # past the block too


def test_rungs_grow_one_idea_at_a_time():
    sizes = [ladder.build(r.number, ladder.train_config(r).model_config(65)).num_params() for r in ladder.flight("lecture")]
    assert sizes[0] == 65 * 65  # a lookup table
    assert sizes[1] == sizes[2]  # 4 heads of a quarter the size have as many weights as one wide head
    assert sizes[2] < sizes[3] < sizes[4] < sizes[5] < sizes[6]
    assert isinstance(ladder.build(6, ladder.train_config(ladder.RUNGS[5]).model_config(65)), GPT)


def test_rung_weights_use_the_same_format_and_are_told_apart(small_text, tmp_path):
    rung = ladder.RUNGS[2]
    trainer = Trainer(ladder.train_config(rung, max_iters=20, eval_interval=10, data=str(small_text)), tmp_path,
                      model_factory=lambda c, v: ladder.build(3, c, v))
    trainer.run()
    assert {p.name for p in tmp_path.iterdir()} >= {"model.safetensors", "config.json", "metrics.jsonl"}
    loaded = ladder.load(tmp_path)
    assert type(loaded) is type(trainer.model) and loaded.rung == 3
    idx = torch.randint(loaded.config.vocab_size, (1, 8))
    torch.testing.assert_close(loaded(idx)[0], trainer.model.eval()(idx)[0])
    with pytest.raises(WeightsError, match="rung 3 of the lecture ladder"):
        GPT.from_pretrained(tmp_path)


def test_ladder_command_prints_the_table(small_text, tmp_path):
    result = run_main(train_main, "--ladder", "--rungs", "1-6", "--max-iters", "30", "--eval-interval", "15",
                      "--eval-iters", "5", "--data", str(small_text), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("rung what changed"):]
    for r in ladder.flight("lecture")[:6]:
        assert f"{r.number}    {r.name}" in table and f"{r.lecture_val:.2f}" in table
    assert (tmp_path / "rung-6" / "model.safetensors").exists()


@pytest.fixture
def gpt_model():
    return small_gpt(weight_std=0.3, block_size=32, n_head=3, n_embd=24)


def test_attention_maps_are_causal_distributions_that_the_model_really_uses(gpt_model):
    idx = torch.randint(len(VOCAB), (1, 12))
    maps = attention_maps(gpt_model, idx)
    assert maps.shape == (2, 3, 12, 12)
    assert torch.all(maps.triu(diagonal=1) == 0)  # the upper triangle, the future, is empty
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 12))
    # the first layer's attention output, rebuilt from the maps, is what the model computes
    block, C = gpt_model.blocks[0], gpt_model.config.n_embd
    x = gpt_model.token_embedding_table(idx) + gpt_model.position_embedding_table(torch.arange(12))
    _, _, v = block.sa.qkv(block.ln1(x)).split(C, dim=2)
    v = v.view(1, 12, 3, 8).transpose(1, 2)  # (1, nh, T, hs)
    y = (maps[0][None] @ v).transpose(1, 2).reshape(1, 12, C)
    torch.testing.assert_close(block.sa.proj(y), block.sa(block.ln1(x)), rtol=1e-4, atol=1e-5)


def test_attention_changes_with_the_prompt_and_draws_a_picture(gpt_model):
    a, text = prompt_maps(gpt_model, "ROMEO: what light")
    b, _ = prompt_maps(gpt_model, "JULIE: what night")
    assert text == "ROMEO: what light" and not torch.allclose(a, b)
    long, shown = prompt_maps(gpt_model, "A" * 100)
    assert long.shape[-1] == 32 and len(shown) == 32  # cut to the block size (and at most 64 characters)
    image = attention_image(a, text)
    assert image.width > 3 * 17 and image.height > 2 * 17
    layer = attention_image(a, text, 1)  # one layer: its heads, larger
    assert layer.height < image.height and layer.width / min(3, a.shape[1]) > image.width / a.shape[1]
    with pytest.raises(ValueError, match="layer must be"):
        attention_image(a, text, a.shape[0] + 1)


def test_the_heatmaps_come_from_the_models_own_forward_pass(gpt_model):
    idx = torch.randint(len(VOCAB), (1, 10))
    logits, _ = gpt_model(idx)
    attention_maps(gpt_model, idx)  # the explicit softmax path, with `wei` kept
    torch.testing.assert_close(gpt_model(idx)[0], logits)  # and back to the fast path, unchanged
    for block in gpt_model.blocks:
        block.sa.keep_wei = True
    torch.testing.assert_close(gpt_model(idx)[0], logits, rtol=1e-4, atol=1e-5)  # both paths compute the same
    for block in gpt_model.blocks:
        block.sa.keep_wei = False


# --- what each rung adds, and the second flight ---

def _resolve(path: str, name: str):
    module = __import__(path.removesuffix(".py").replace("/", "."), fromlist=["_"])
    if name.startswith("BODIES["):
        return module.BODIES[int(name[7:-1])]
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("number", [r.number for r in ladder.RUNGS])
def test_each_rungs_diff_is_the_code_of_the_module_that_builds_it(number):
    """Every name a rung's code view shows exists where it says, and the diff is its source, line for line:
    the kept and added lines make the object as it is, the kept and removed ones what it replaces."""
    rung = ladder.rung(number)
    shown = rung_code.pieces(number)
    assert shown or rung_code.settings_diff(rung)  # every rung shows what it changes
    for piece in shown:
        after = _resolve(piece.path, piece.name)
        assert [line[1:] for line in piece.diff if line[0] in " +"] == rung_code.source(after)
        if piece.replaces:
            before = _resolve(piece.replaces[1], piece.replaces[0])
            assert [line[1:] for line in piece.diff if line[0] in " -"] == rung_code.source(before)
            assert any(line[0] in "+-" for line in piece.diff)  # it changes something
        else:
            assert all(line[0] == "+" for line in piece.diff)
    # the model this rung builds really uses the classes its view shows
    model = ladder.build(number, ladder.train_config(rung).model_config(65))
    for piece in shown:
        cls = _resolve(piece.path, piece.name.split(".")[0])
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            assert any(isinstance(m, cls) for m in model.modules()), cls


def test_a_rungs_settings_diff_is_what_it_trains_with():
    rung = ladder.rung(9)
    lines = rung_code.settings_diff(rung)
    assert "-learning_rate=0.001" in lines and "+learning_rate=0.0035" in lines and "+warmup_iters=30" in lines
    before = ladder.train_config(ladder.rung(rung.before))
    assert f"-warmup_iters={before.warmup_iters!r}" in lines
    assert rung_code.settings_diff(ladder.rung(11)) == []  # an idea in the code alone
    assert ladder.rung(11).before == 9  # the flight goes on from AdamW's schedule, past Muon


@pytest.mark.parametrize("number", [r.number for r in ladder.flight("beyond")])
def test_the_second_flight_trains_saves_and_loads_like_every_rung(number, small_text, tmp_path):
    rung = ladder.rung(number)
    config = ladder.train_config(rung, max_time=0, max_iters=4, eval_interval=2, eval_iters=1, sample_length=10,
                                 n_layer=1, n_embd=32, n_head=2, block_size=16, data=str(small_text))
    trainer = Trainer(config, tmp_path, model_factory=lambda c, v: ladder.build(number, c, v))
    trainer.run()
    loaded = ladder.load(tmp_path)
    assert type(loaded) is type(trainer.eval_model) and loaded.config == trainer.eval_model.config
    idx = torch.randint(loaded.config.vocab_size, (1, 8))
    torch.testing.assert_close(loaded(idx)[0], trainer.eval_model.eval()(idx)[0])
    if number in (8, 9, 10):  # the lecture's GPT, trained another way
        GPT.from_pretrained(tmp_path)
    else:
        with pytest.raises(WeightsError, match=f"rung {number} of the lecture ladder"):
            GPT.from_pretrained(tmp_path)


@pytest.mark.parametrize("number", [11, 12, 13])
def test_rotary_rungs_generate_through_the_kv_cache_as_without_it(number):
    torch.manual_seed(0)
    config = ladder.train_config(ladder.rung(number), n_layer=2, n_embd=32, n_head=2,
                                 block_size=16).model_config(len(VOCAB))
    model = ladder.build(number, config, VOCAB).eval()
    for p in model.parameters():
        if p.dim() >= 2:
            torch.nn.init.normal_(p, std=0.3)  # a context-dependent model: the check has teeth
    idx = torch.randint(len(VOCAB), (2, 16))
    full, _ = model(idx)
    cache = KVCache(config, 2)
    model(idx[:, :9], cache=cache)
    for t in range(9, 16):
        step, _ = model(idx[:, t:t + 1], cache=cache)
        torch.testing.assert_close(step[:, -1], full[:, t], atol=1e-5, rtol=1e-4)
    shifted = torch.roll(idx, 1, dims=1)  # positions matter: the same characters elsewhere give other logits
    assert not torch.allclose(model(shifted)[0][:, -1], full[:, -1])


def test_the_ladder_command_lists_the_rungs_and_shows_one_rungs_code():
    listed = run_main(train_main, "--ladder", "--list")
    assert listed.returncode == 0, listed.stderr
    for r in ladder.RUNGS:
        assert r.change[:40] in listed.stdout
    shown = run_main(train_main, "--ladder", "--show", "12")
    assert shown.returncode == 0, shown.stderr
    assert "QKNormAttention.forward (replaces RotaryAttention.forward of gpt/ladder/beyond.py)" in shown.stdout
    assert "+    q, k = self.q_norm(q), self.k_norm(k)" in shown.stdout
    wrong = run_main(train_main, "--ladder", "--show", "99")
    assert wrong.returncode == 2 and "rungs 1 to 14" in wrong.stderr and "Traceback" not in wrong.stderr
    from train.__main__ import parse_rungs
    assert parse_rungs("beyond") == list(range(8, 15)) and parse_rungs("lecture") == list(range(1, 8))


def test_a_rung_added_to_the_list_appears_everywhere(monkeypatch):
    """The rungs are one list: a 15th appended to it is in the chart (with a colour of its own), the code view,
    the command line's range, help and messages, and the Ladder tab's words, with no other change."""
    from train.__main__ import parse_rungs
    from webapp import ladder as ladder_tab

    extra = ladder.Rung(15, "longer warmup", "a longer warmup", None, dict(ladder.BEYOND), flight="beyond")
    monkeypatch.setattr(ladder, "RUNGS", [*ladder.RUNGS, extra])
    colors = ladder_tab.series()
    assert "15 longer warmup" in colors and len(set(colors.values())) == len(colors)  # no colour shared
    frame = ladder_tab.ladder_frame({"ladder": [{"rung": 15, "name": "longer warmup", "lecture_val": None,
                                                 "curve": [(0, 4.2), (100, 2.1)]}]})
    assert "15 longer warmup" in set(frame["rung"])
    assert "Rung 15 · longer warmup" in ladder_tab.rung_view(15, {"ladder": []})
    assert "Rungs 8-15 go" in ladder_tab.intro()
    assert parse_rungs("beyond") == list(range(8, 16)) and parse_rungs("15") == [15]
    help_text = run_main(train_main, "--help").stdout
    assert "second flight, 8-15" in " ".join(help_text.split())
    wrong = run_main(train_main, "--ladder", "--rungs", "16")
    assert wrong.returncode == 2 and "rungs 1 to 15" in wrong.stderr
