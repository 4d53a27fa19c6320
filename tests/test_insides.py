"""Inside the model (gpt/insides/characters.py): the next character's distribution is the sampler's own, the characters' map.

In-process, on the shipped weights; the app's endpoint is tested in test_app.py, the tab in test_browser.py.
"""

import pytest
import torch

from gpt import GPT
from gpt.generation import sampling
from gpt.insides.characters import character_map, next_characters, next_logits
from gpt.generation.sampling import Settings, sample, seeded

from conftest import ROOT

PROMPT = "ROMEO:\nWhat light through yonder window b"


@pytest.fixture(scope="module")
def shipped() -> GPT:
    return GPT.from_pretrained(ROOT / "weights" / "default").eval()


@pytest.mark.parametrize("settings", [Settings(0.8), Settings(1.3, top_k=3), Settings(1.0, top_p=0.9),
                                      Settings(0.9, top_k=5, top_p=0.95)], ids=["temperature", "top-k", "top-p", "all"])
def test_the_sampler_draws_only_and_as_often_as_the_view_says(shipped, settings):
    """The view and the sampler cannot drift: 2,000 seeded draws land only on characters the view gives a
    probability, as often as it says."""
    view = {c.char: c.probability for c in next_characters(shipped, PROMPT, settings, n=len(shipped.vocab))}
    n = 2000
    logits = next_logits(shipped, PROMPT)[None].expand(n, -1)  # (n, V): the same position, n draws
    drawn = sample(logits, [settings] * n, [seeded(1000 + i) for i in range(n)])
    counts = {ch: 0 for ch in view}
    for i in drawn:
        counts[shipped.vocab[i]] += 1
    assert all(view[ch] > 0 for ch, k in counts.items() if k)
    assert max(abs(counts[ch] / n - p) for ch, p in view.items()) < 0.04  # 4 standard deviations at p = 1/2
    assert abs(sum(view.values()) - 1) < 1e-5


def test_sample_and_the_view_call_one_function(shipped, monkeypatch):
    """Both ask gpt.generation.sampling.ranked_probabilities: change it, and both change with it."""
    z = shipped.vocab.index("z")

    def only_z(logits, settings):
        probs = torch.zeros_like(logits, dtype=torch.float32)
        probs[:, 0] = 1.0
        order = torch.arange(logits.shape[1]).roll(-z).expand(logits.shape[0], -1)  # z first
        return probs, order

    monkeypatch.setattr(sampling, "ranked_probabilities", only_z)
    assert sample(next_logits(shipped, PROMPT)[None], [Settings()], [seeded(0)]) == [z]
    assert next_characters(shipped, PROMPT, Settings())[0].char == "z"
    assert next_characters(shipped, PROMPT, Settings())[0].probability == 1.0


def test_greedy_is_the_likeliest_character_alone(shipped):
    top = next_characters(shipped, PROMPT, Settings(temperature=0))
    assert top[0].probability == 1.0 and all(c.probability == 0 for c in top[1:])
    assert top[0].char == shipped.vocab[int(next_logits(shipped, PROMPT).argmax())]
    assert [c.softmax for c in top] == sorted((c.softmax for c in top), reverse=True)  # most likely first


def test_the_characters_map_is_deterministic_and_sorts_the_characters(shipped):
    first, again = character_map(shipped), character_map(shipped)
    assert first == again and len(first.chars) == 65 and first.chars == shipped.vocab
    flipped = GPT(shipped.config, shipped.vocab)
    flipped.load_state_dict(shipped.state_dict())
    with torch.no_grad():
        flipped.token_embedding_table.weight.neg_()  # the same table up to a sign: PCA's axes could flip
    assert character_map(flipped).x == pytest.approx(first.x, abs=1e-5)
    assert character_map(flipped).y == pytest.approx(first.y, abs=1e-5)
    point = {ch: torch.tensor([x, y]) for ch, x, y in zip(first.chars, first.x, first.y)}

    def spread(chars):  # mean distance between two characters of the group
        pts = torch.stack([point[c] for c in chars])
        return float(torch.cdist(pts, pts).sum() / (len(chars) * (len(chars) - 1)))

    assert spread("aeiou") < 0.7 * spread(first.chars)  # training put the vowels together
    assert spread(",.;:!?") < 0.7 * spread(first.chars)  # and the punctuation


def test_a_run_s_map_at_step_0_is_the_table_it_began_with_on_the_end_map_s_axes(small_text, tmp_path):
    """A trained run keeps its step-0 table; drawn on the end map's axes it is another picture: what training did.
    Weights with no step-0 record say so (None)."""
    from gpt.sharing import weights
    from gpt.insides.characters import start_map
    from gpt.training.trainer import TrainConfig, Trainer

    config = TrainConfig.from_preset("tiny", data=str(small_text), max_iters=20, eval_interval=20, eval_iters=2,
                                     sample_length=1, device="cpu")
    Trainer(config, tmp_path).run()
    end = GPT.from_pretrained(tmp_path)
    start = weights.read_start_embedding(tmp_path)
    assert weights.read_start_embedding(ROOT / "weights" / "default") is None  # shipped: no step-0 record
    before, after = start_map(end, start), character_map(end)
    assert before.chars == after.chars == end.vocab
    assert start_map(end, end.token_embedding_table.weight) == after  # the end table on its own axes: the end map
    moved = torch.tensor([before.x, before.y]) / before.spread - torch.tensor([after.x, after.y]) / after.spread
    assert float(moved.norm(dim=0).mean()) > 0.3  # the characters moved, beyond any rescaling
    assert after.spread > 1.5 * before.spread  # and spread out from the small random start (std 0.02)
    assert sum(after.explained) > sum(before.explained)  # the end's axes hold more of the end table than of step 0's
