import json

import pytest
import torch
from safetensors.torch import load_file

from gpt import CharTokenizer, GPT, WeightsError
from gpt.sharing import weights
from gpt.generation.decode import generate_text


from conftest import VOCAB, small_gpt


def small_model(seed=0, **overrides) -> GPT:
    return small_gpt(seed=seed, **{"n_embd": 16, **overrides})


def test_saved_weights_load_bit_identical_and_generate_the_same_text(tmp_path):
    model = small_model()
    weights.save_weights(model, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "model.safetensors"]
    loaded = GPT.from_pretrained(tmp_path / "run")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert loaded.config == model.config and loaded.vocab == VOCAB and not loaded.training
    same = dict(max_new_tokens=40, seed=7, temperature=1.0)
    assert generate_text(loaded, "ROMEO:", **same) == generate_text(model, "ROMEO:", **same)


def test_config_json_holds_the_config_fields_and_the_vocabulary_in_id_order(tmp_path):
    weights.save_weights(small_model(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config == {"vocab_size": len(VOCAB), "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16,
                      "dropout": 0.0, "bias": True, "vocab": VOCAB}
    assert CharTokenizer.from_pretrained(tmp_path).chars == VOCAB


def test_hub_mixin_save_pretrained_and_from_pretrained(tmp_path):
    model = small_model()
    model.save_pretrained(tmp_path / "mixin")
    files = {p.name for p in (tmp_path / "mixin").iterdir()}
    assert {"model.safetensors", "config.json", "README.md"} <= files
    loaded = GPT.from_pretrained(str(tmp_path / "mixin"))
    idx = torch.randint(len(VOCAB), (1, 16))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0], rtol=0, atol=0)


def test_compact_bf16_weights_load_into_a_float32_model(tmp_path):
    model = small_model()
    weights.save_weights(model, tmp_path, dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for t in load_file(tmp_path / "model.safetensors").values())
    loaded = GPT.from_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight, rtol=1e-2, atol=1e-3)


def test_a_save_that_dies_midway_leaves_the_previous_weights_intact(tmp_path, monkeypatch):
    old = small_model(seed=0)
    weights.save_weights(old, tmp_path)

    def dying_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)  # half-written bytes...
        raise KeyboardInterrupt  # ...then the process is interrupted

    monkeypatch.setattr(weights, "save_file", dying_save_file)
    with pytest.raises(KeyboardInterrupt):
        weights.save_weights(small_model(seed=1), tmp_path)
    monkeypatch.undo()
    loaded = GPT.from_pretrained(tmp_path)
    assert torch.equal(loaded.lm_head.weight, old.lm_head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]  # no litter


def test_truncated_weights_are_reported_as_corrupt(tmp_path):
    weights.save_weights(small_model(), tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        GPT.from_pretrained(tmp_path)


def test_a_pickle_offered_as_weights_is_refused_without_unpickling(tmp_path, monkeypatch):
    model = small_model()
    weights.save_weights(model, tmp_path)
    torch.save(model.state_dict(), tmp_path / "model.safetensors")  # a pickle under the expected name

    def never(*args, **kwargs):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(WeightsError, match="pickle"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="pytorch_model.bin, a pickle file, which we never load"):
        GPT.from_pretrained(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("vocab"), "lacks vocab"),
    (lambda c: c.pop("n_layer"), "lacks n_layer"),
    (lambda c: c.update(n_embd=32), r"does not match its config.json: .*expected"),
    (lambda c: c.update(n_head=3), "invalid setting: n_embd \\(16\\) must be divisible by n_head \\(3\\)"),
    (lambda c: c.update(vocab=c["vocab"][:-1]), r"vocab has \d+ characters but vocab_size is \d+"),
])
def test_a_config_that_is_not_ours_or_does_not_match_is_explained(tmp_path, edit, message):
    weights.save_weights(small_model(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    edit(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=message):
        GPT.from_pretrained(tmp_path)


def test_folders_that_are_not_weights_are_explained(tmp_path):
    with pytest.raises(WeightsError, match="no config.json"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        GPT.from_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="not a Hub repo id"):
        GPT.from_pretrained(tmp_path / "missing" / "deeper")
