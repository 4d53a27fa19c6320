"""The export (gpt.export, gpt.sharing.export_folder): our weights in transformers, onnxruntime and transformers.js, each
checked against our own model, and a Hub push (to tests/hub_server.py, the local stand-in) that they all load."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, TOKENS
from gpt import GPT
from gpt.config import GPTConfig
from gpt.generation.decode import generate_tokens
from gpt.sharing.export_folder import EXPORTED, MAX_LOGIT_ERROR, ONNX_DIR, QUANTIZED_FILE, OnnxModel, export
from gpt.model import GPTLanguageModel
from gpt.training.presets import PRESETS
from gpt.tokenizer import CharTokenizer
from gpt.sharing.weights import save_weights

WRITE, READ, BOB = list(TOKENS)
DEFAULT = ROOT / "weights" / "default"
PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
ARCHITECTURE = ("n_layer", "n_head", "n_embd", "block_size", "bias")  # what an export depends on, not the recipe
SHAPES: dict[tuple, str] = {}  # the first preset of each architecture (gpu trains the lecture's: exported once)
for name in PRESETS:
    SHAPES.setdefault(tuple(PRESETS[name][k] for k in ARCHITECTURE), name)


def small_shape(preset: str) -> dict:
    """A preset's architecture at a size that exports in seconds: its heads and its biases, at most 2 layers (still a
    past per layer), 16 channels a head and a 32-character window; tiny is this already. The shipped weights (6
    layers, 192 wide, block 128) are the full-size check."""
    p = PRESETS[preset]
    return dict(n_layer=min(p["n_layer"], 2), n_head=p["n_head"], n_embd=min(p["n_embd"], 16 * p["n_head"]),
                block_size=min(p["block_size"], 32), bias=p["bias"])


def random_model(preset: str, vocab: list[str], seed: int = 0) -> GPTLanguageModel:
    """A preset's architecture (small_shape) with random weights, biases and LayerNorm gains included (none left at
    0 or 1)."""
    model = GPTLanguageModel(GPTConfig(vocab_size=len(vocab), dropout=0.0, **small_shape(preset)), vocab).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or ".ln" in name or name.startswith("ln_f"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return model


def greedy(forward, ids: list[int], n: int, block_size: int, rebuild: int) -> list[int]:
    """n greedy tokens through a cache, past block_size as gpt.generation.decode goes: when the window is full, start again
    from the last `rebuild` tokens. forward(new ids, state or None) -> (last logits, state, positions held)."""
    context = ids[-block_size:]
    logits, state, seen = forward(context, None)
    out = []
    for _ in range(n):
        token = int(logits.argmax())
        out.append(token)
        context = (context + [token])[-block_size:]
        logits, state, seen = forward(context[-rebuild:], None) if seen == block_size else forward([token], state)
    return out


def onnx_forward(onnx: OnnxModel):
    def forward(ids, past):
        logits, present = onnx.forward(ids, past)
        return logits[-1], present, present[0].shape[2]
    return forward


def transformers_forward(hf):
    @torch.no_grad()
    def forward(ids, cache):
        seen = 0 if cache is None else cache.get_seq_length()
        out = hf(torch.tensor([ids]), past_key_values=cache, use_cache=True)
        return out.logits[0, -1], out.past_key_values, seen + len(ids)
    return forward


def ours_greedy(model, ids, n, rebuild):
    return [int(t) for t in generate_tokens(model, torch.tensor([ids]), n, temperature=0, rebuild=rebuild)]


@pytest.fixture(scope="module")
def vocab(shakespeare):
    return sorted(set(shakespeare))


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    """The shipped weights exported by the command line, as a user runs it; what it printed, checked."""
    folder = tmp_path_factory.mktemp("export")
    result = subprocess.run([sys.executable, "-m", "gpt.export", str(DEFAULT), str(folder / "default")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    printed = re.fullmatch(r"wrote .*default: 7 files, [\d.]+ MiB; largest logit difference from ours: transformers "
                           r"(\S+), onnxruntime (\S+)\n", result.stdout)
    assert printed, result.stdout
    assert result.stderr == ""  # the exporters' chatter stays off the console
    assert [p.name for p in folder.iterdir()] == ["default"]  # no scratch folder left behind
    errors = {"transformers": float(printed[1]), "onnxruntime": float(printed[2])}
    return folder / "default", {"max_logit_error": errors}


def check_against_ours(model: GPTLanguageModel, out: Path, report: dict, text: str):
    """Logits of transformers and onnxruntime against ours, then 200 greedy characters in all three, past
    block_size: through the cache (rebuilt as gpt.generation.decode rebuilds it) and re-reading the whole window each time."""
    from transformers import AutoModelForCausalLM

    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(EXPORTED)
    assert max(report["max_logit_error"].values()) <= MAX_LOGIT_ERROR
    hf = AutoModelForCausalLM.from_pretrained(out).eval()  # no extra arguments, no custom code
    assert type(hf).__name__ == "GPT2LMHeadModel"
    onnx = OnnxModel(out / ONNX_DIR / "model.onnx", model.config)
    ids = CharTokenizer(model.vocab).encode(text)[: model.config.block_size]
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0]
        theirs = hf(torch.tensor([ids])).logits[0]
    logits, _ = onnx.forward(ids)
    differences = {"transformers": (ours - theirs).abs().max().item(),
                   "onnxruntime": float(np.abs(ours.numpy() - logits).max())}
    print(f"largest logit difference from ours: {differences}")
    assert max(differences.values()) <= MAX_LOGIT_ERROR, differences

    block = model.config.block_size
    prompt = ids[:10]
    expected = ours_greedy(model, prompt, 200, block // 2)  # our generator's default past block_size
    assert greedy(transformers_forward(hf), prompt, 200, block, block // 2) == expected
    assert greedy(onnx_forward(onnx), prompt, 200, block, block // 2) == expected  # through the KV cache
    # and the full window re-read at every step (the lecture's way), with an empty past each time
    assert greedy(onnx_forward(onnx), prompt, 200, block, block) == ours_greedy(model, prompt, 200, block)


@pytest.mark.parametrize("preset", [p for p in SHAPES.values() if p != "tiny"])  # tiny: too narrow, refused below
def test_every_preset_architecture_exports_exactly_to_transformers_and_onnx(preset, vocab, tmp_path, shakespeare):
    model = random_model(preset, vocab)
    assert model.config.bias == PRESETS[preset]["bias"] and model.config.n_head == PRESETS[preset]["n_head"]
    report = export(model, tmp_path / preset)
    if model.config.bias:  # lm_head's bias, carried by ln_f's: the logits did not move
        assert 0 < report["fold_error"] <= 1e-5
    check_against_ours(model, tmp_path / preset, report, shakespeare[:1000])
    assert GPT.from_pretrained(tmp_path / preset).state_dict().keys() == model.state_dict().keys()


def test_the_shipped_weights_export_exactly_and_load_back(default_export, shakespeare):
    out, report = default_export
    model = GPT.from_pretrained(DEFAULT)
    check_against_ours(model, out, report, shakespeare[-2000:])
    back = GPT.from_pretrained(out)  # the exported folder is a weights folder of ours too
    ids = torch.tensor([CharTokenizer(model.vocab).encode(PROMPT)])
    assert torch.equal(back(ids)[0], model(ids)[0])
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["activation_function"] == "relu"
    assert config["tie_word_embeddings"] is False and config["vocab"] == model.vocab
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["do_sample"] is True and generation["max_new_tokens"] <= model.config.block_size


def test_the_quantized_graph_is_a_quarter_the_size_and_reads_shakespeare_as_well(default_export, shakespeare):
    out, report = default_export
    model = GPT.from_pretrained(DEFAULT)
    full, small = (out / ONNX_DIR / "model.onnx").stat().st_size, (out / ONNX_DIR / QUANTIZED_FILE).stat().st_size
    print(f"model.onnx {full / 2**20:.1f} MiB, {QUANTIZED_FILE} {small / 2**20:.1f} MiB")
    assert small < 0.35 * full
    ids = CharTokenizer(model.vocab).encode(shakespeare[-model.config.block_size:])
    loss = {}
    for name in ("model.onnx", QUANTIZED_FILE):
        logits, _ = OnnxModel(out / ONNX_DIR / name, model.config).forward(ids)
        logp = torch.log_softmax(torch.tensor(logits[:-1]), -1)
        loss[name] = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean().item()
    print(f"loss on the last window of Tiny Shakespeare: {loss}")
    assert loss[QUANTIZED_FILE] < loss["model.onnx"] + 0.05  # int8 weights, the same model


def test_the_tokenizer_gives_our_ids_and_text_back(default_export, shakespeare):
    from transformers import AutoTokenizer

    out, _ = default_export
    ours = CharTokenizer.from_pretrained(DEFAULT)
    theirs = AutoTokenizer.from_pretrained(out)
    for text in (shakespeare[:5000], "".join(ours.chars), "  two spaces\n\n\nthree newlines ", " ", "\n"):
        ids = ours.encode(text)
        assert theirs(text)["input_ids"] == ids
        assert theirs.decode(ids) == text == ours.decode(ids)
    # a character outside the vocabulary: ours refuses it by name; tokenizer.json cannot refuse, it leaves it out
    assert theirs("héllo")["input_ids"] == ours.encode("hllo")
    with pytest.raises(ValueError, match="é"):
        ours.encode("héllo")


def test_an_earlier_graph_of_the_same_weights_is_reused_and_no_other_is(vocab, tmp_path, monkeypatch):
    from gpt.sharing import export_folder

    a, b = random_model("cpu", vocab, seed=1), random_model("cpu", vocab, seed=2)
    export(a, tmp_path / "a")
    graph = tmp_path / "a" / ONNX_DIR / "model.onnx"
    made = []
    real = export_folder.export_onnx
    monkeypatch.setattr(export_folder, "export_onnx", lambda model, path: (made.append(path), real(model, path)))
    report = export(a, tmp_path / "again", graph=graph)  # a shipped or pulled folder's graph of these weights
    assert made == [] and (tmp_path / "again" / ONNX_DIR / "model.onnx").read_bytes() == graph.read_bytes()
    assert report["max_logit_error"]["onnxruntime"] <= MAX_LOGIT_ERROR  # measured on the copy, as on a new graph

    dst = tmp_path / "dst.onnx"
    assert not export_folder.reused(b, graph, dst) and not dst.exists()  # another model's graph: not these logits
    (tmp_path / "damaged.onnx").write_bytes(graph.read_bytes()[:4096])
    assert not export_folder.reused(a, tmp_path / "damaged.onnx", dst) and not dst.exists()
    assert not export_folder.reused(a, tmp_path / "missing.onnx", dst)


def test_weights_gpt2_cannot_express_are_refused_in_one_line_and_nothing_is_written(vocab, tmp_path):
    model = random_model("tiny", vocab)  # 32 channels, 65 characters, lm_head with a bias: no exact GPT-2
    assert {k: getattr(model.config, k) for k in ARCHITECTURE} == {k: PRESETS["tiny"][k] for k in ARCHITECTURE}
    save_weights(model, tmp_path / "tiny")
    out = tmp_path / "exports" / "tiny"
    result = subprocess.run([sys.executable, "-m", "gpt.export", str(tmp_path / "tiny"), str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "n_embd 32" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not any((tmp_path / "exports").iterdir() if (tmp_path / "exports").exists() else [])

    (out / "keep.txt").parent.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")  # a folder in use is never replaced unless asked
    result = subprocess.run([sys.executable, "-m", "gpt.export", str(DEFAULT), str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def run_node(node_modules, script: str, tmp_path: Path) -> str:
    """Run an ES module beside a link to node_modules (Node finds packages from the script's folder up)."""
    folder = tmp_path / "node"
    folder.mkdir(exist_ok=True)
    if not (folder / "node_modules").exists():
        (folder / "node_modules").symlink_to(node_modules, target_is_directory=True)
    (folder / "main.mjs").write_text(script, encoding="utf-8")
    result = subprocess.run(["node", "main.mjs"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_transformers_js_loads_the_folder_and_writes_what_we_write(default_export, node_modules, tmp_path):
    out, _ = default_export
    model = GPT.from_pretrained(DEFAULT)
    tokenizer = CharTokenizer(model.vocab)
    new = model.config.block_size - len(PROMPT)  # GPT-2 stops at block_size
    script = f"""
import {{ env, pipeline, AutoTokenizer }} from "@huggingface/transformers";
env.allowRemoteModels = false;
env.localModelPath = {json.dumps(str(out.parent) + "/")};
const tokenizer = await AutoTokenizer.from_pretrained({json.dumps(out.name)});
const prompt = {json.dumps(PROMPT)};
const results = {{ ids: tokenizer.encode(prompt, {{ add_special_tokens: false }}) }};
for (const dtype of ["fp32", "q8"]) {{
  const generate = await pipeline("text-generation", {json.dumps(out.name)}, {{ dtype }});
  const [output] = await generate(prompt, {{ max_new_tokens: {new}, do_sample: false }});
  results[dtype] = output.generated_text;
}}
console.log(JSON.stringify(results));
"""
    results = json.loads(run_node(node_modules, script, tmp_path).strip().splitlines()[-1])
    ids = tokenizer.encode(PROMPT)
    assert results["ids"] == ids
    expected = PROMPT + tokenizer.decode(ours_greedy(model, ids, new, model.config.block_size // 2))
    assert results["fp32"] == expected  # float32: exactly our greedy text
    assert results["q8"].startswith(PROMPT) and len(results["q8"]) == len(expected)  # int8: its own, as long
    assert set(results["q8"]) <= set(model.vocab)


def card_blocks(card: str) -> dict[str, list[str]]:
    return {lang: re.findall(rf"```{lang}\n(.*?)```", card, re.S) for lang in ("python", "js")}


def test_a_pushed_repo_serves_transformers_onnxruntime_and_transformers_js_as_its_card_shows(
        hub_server, node_modules, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpt.sharing.hub import push

    push(DEFAULT, "alice/exported", token=WRITE)
    _, files = hub_server.state.repos[("model", "alice/exported")].commits[-1]
    assert set(EXPORTED) <= set(files) and {"README.md", "metrics.jsonl", "loss_curve.png"} <= set(files)
    model = GPT.from_pretrained(DEFAULT)
    tokenizer = CharTokenizer(model.vocab)
    assert torch.equal(GPT.from_pretrained("alice/exported").lm_head.weight, model.lm_head.weight)

    hf = AutoModelForCausalLM.from_pretrained("alice/exported")  # by repo id, from the Hub (HF_ENDPOINT)
    ids = AutoTokenizer.from_pretrained("alice/exported")("ROMEO:", return_tensors="pt")["input_ids"]
    text = hf.generate(ids, do_sample=False, max_new_tokens=100)[0].tolist()
    assert text == tokenizer.encode("ROMEO:") + ours_greedy(model, tokenizer.encode("ROMEO:"), 100, 64)

    card = files["README.md"].decode()
    assert "transformers" in card and "onnx" in card  # tags, so the Hub lists it with them
    blocks = card_blocks(card)
    ours, pipeline, onnx = blocks["python"]
    assert 'pipeline("text-generation", model="alice/exported")' in pipeline and "hf_hub_download" in onnx
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}  # HF_ENDPOINT (conftest): the stand-in is the Hub
    run = lambda code: subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,  # noqa: E731
                                      text=True, timeout=300)
    for code, expected in ((pipeline, None), (onnx, "ROMEO:" + tokenizer.decode(
            ours_greedy(model, tokenizer.encode("ROMEO:"), 100, 64)))):
        result = run(code)  # as written on the card
        assert result.returncode == 0, result.stderr
        written = result.stdout[:-1]  # print's newline
        assert written.startswith("ROMEO:") and len(written) == len("ROMEO:") + 100 and set(written) <= set(model.vocab)
        if expected:
            assert written == expected  # the onnxruntime snippet is greedy: our text exactly
    result = subprocess.run([sys.executable, "-c", ours], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and len(result.stdout) == 300, result.stderr

    # transformers.js: the card's snippet as written, after two lines that make the stand-in its Hub
    (js,) = blocks["js"]
    prelude = (f'import {{ env }} from "@huggingface/transformers";\n'
               f'env.remoteHost = {json.dumps(os.environ["HF_ENDPOINT"] + "/")}; '
               f'env.cacheDir = {json.dumps(str(tmp_path / "js-cache"))};\n')
    written = run_node(node_modules, prelude + js, tmp_path)[:-1]
    assert written.startswith("ROMEO:") and len(written) == len("ROMEO:") + 100 and set(written) <= set(model.vocab)


def test_repos_pushed_before_the_export_still_load(hub_server, tmp_path):
    """A repo in this project's own layout (as pushed before gpt.export, or without its extra) loads as before."""
    from huggingface_hub import HfApi

    api = HfApi(token=WRITE)
    api.create_repo("alice/old-layout", exist_ok=True)
    api.upload_folder(repo_id="alice/old-layout", folder_path=DEFAULT, allow_patterns=["model.safetensors",
                                                                                        "config.json"])
    loaded = GPT.from_pretrained("alice/old-layout")
    assert torch.equal(loaded.lm_head.weight, GPT.from_pretrained(DEFAULT).lm_head.weight)
