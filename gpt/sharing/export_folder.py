"""Export: weights that transformers, transformers.js and onnxruntime load as they are (`python -m gpt.export`).

The folder holds a GPT-2 as transformers writes one (config.json, model.safetensors, generation_config.json), a
character-level tokenizer.json, and onnx/model.onnx (float32) and onnx/model_quantized.onnx (int8 weights), with
the KV cache as inputs and outputs, where transformers.js looks for them. config.json keeps our own settings and
vocabulary beside GPT-2's, so GPT.from_pretrained(OUT) loads it too, and a Hub push of a run is this folder.

Weights GPT-2 cannot express exactly (gpt2.py: lm_head's bias in a model narrower than its vocabulary) are refused
with one line and exit status 2; nothing is written until everything is made and checked. Needs the export extra:
pip install ".[export]" (transformers, tokenizers, onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

from gpt.errors import ExportError, WeightsError
from gpt.sharing.gpt2 import hf_config, to_gpt2
from gpt.model import GPTLanguageModel

EXTRA = 'pip install ".[export]"  (or: pip install -r requirements-export.txt)'
ONNX_DIR = "onnx"
ONNX_FILE, QUANTIZED_FILE = "model.onnx", "model_quantized.onnx"  # transformers.js: dtype "fp32" and "q8"
MAX_LOGIT_ERROR = 1e-4  # float32: ours, transformers' and onnxruntime's logits agree within this, or no export
EXPORTED = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            f"{ONNX_DIR}/{ONNX_FILE}", f"{ONNX_DIR}/{QUANTIZED_FILE}"]


def require_libraries() -> None:
    """The export's libraries, or a WeightsError naming the extra that brings them."""
    import importlib.util

    missing = [m for m in ("transformers", "tokenizers", "onnx", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise WeightsError(f"exporting needs {', '.join(missing)}: {EXTRA}")


def available() -> bool:
    try:
        require_libraries()
        return True
    except WeightsError:
        return False


class _Advice(logging.Filter):
    """onnxruntime's quantizer advises, through the root logger, a pre-processing step made for image models."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


@contextmanager
def quiet():
    """The exporters' own chatter (progress lines, notes on torchvision, axis names, advice) kept off the console:
    the command prints one line of what it checked, and a server's log stays readable."""
    torch_onnx, advice = logging.getLogger("torch.onnx"), _Advice()
    level = torch_onnx.level
    torch_onnx.setLevel(logging.ERROR)
    logging.getLogger().addFilter(advice)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_onnx.setLevel(level)
        logging.getLogger().removeFilter(advice)


# --- transformers: the model, its generation settings, the tokenizer ---


def hf_model(model: GPTLanguageModel):
    """transformers' GPT2LMHeadModel holding our weights (float32), its state dict, and how far its logits may be
    from ours (gpt.sharing.gpt2.to_gpt2)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    state, fold_error = to_gpt2(model.state_dict(), model.config)
    ours = {k: getattr(model.config, k) for k in ("block_size", "dropout", "bias")}  # read by gpt.config
    config = GPT2Config(**hf_config(model.config), **ours, vocab=model.vocab)
    gpt2 = GPT2LMHeadModel(config).eval()
    missing, unexpected = gpt2.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias")]
    if missing or unexpected:  # every tensor of GPT-2 is ours and the other way round
        raise ExportError(f"the GPT-2 mapping is incomplete: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return gpt2, state, fold_error


def generation_config(model: GPTLanguageModel):
    """Sampling at temperature 1, as our generator's default, half a window of new characters: GPT-2 has no
    position past block_size, so transformers' generate stops there (prompt and new characters together)."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=True, temperature=1.0, top_k=0, max_new_tokens=model.config.block_size // 2,
                            bos_token_id=None, eos_token_id=None, pad_token_id=None)


def hf_tokenizer(vocab: list[str]):
    """One token per character, ids in vocabulary order: our CharTokenizer's ids and text, spaces and newlines too.

    BPE with no merges splits text into characters and looks each one up; a character outside the vocabulary has
    no id and is left out (a tokenizer.json cannot refuse text as CharTokenizer does). Fuse joins the characters
    back without the spaces a decoder would otherwise put between tokens."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(vocab)}, merges=[]))
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False,
                                   model_max_length=None)


# --- ONNX: the KV cache as inputs and outputs, named as transformers.js expects of a GPT-2 ---


class _Past:
    """What GPTLanguageModel.forward asks of a cache, over the graph's inputs: earlier keys and values, positions,
    and which keys each new token may see (causal, not padding), so the model's own code makes the graph."""

    def __init__(self, past: list[torch.Tensor], attention_mask: torch.Tensor, position_ids: torch.Tensor):
        self.past, self.position_ids, self.presents = past, position_ids, []
        T, P = position_ids.size(1), past[0].size(2)
        key = torch.arange(P + T, device=position_ids.device)  # (P+T,)
        query = torch.arange(T, device=position_ids.device) + P  # (T,)
        causal = key[None, :] <= query[:, None]  # (T, P+T)
        itself = key[None, :] == query[:, None]  # a padding position still sees itself: no row is all masked
        self.mask = causal[None, None] & (attention_mask.bool()[:, None, None, :] | itself[None, None])  # (B,1,T,P+T)

    def positions(self, T: int) -> torch.Tensor:
        return self.position_ids  # (B, T)

    def layer(self, i: int) -> "_Past":
        self.current = i
        return self

    def update(self, k, v):  # (B, nh, T, hs) new keys and values of layer self.current
        k = torch.cat([self.past[2 * self.current], k], dim=2)  # (B, nh, P+T, hs)
        v = torch.cat([self.past[2 * self.current + 1], v], dim=2)
        self.presents += [k, v]
        return k, v, self.mask


class _WithPast(nn.Module):
    def __init__(self, model: GPTLanguageModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = _Past(list(past), attention_mask, position_ids)
        logits, _ = self.model(input_ids, cache=cache)
        return (logits, *cache.presents)


def onnx_names(n_layer: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *present]


def export_onnx(model: GPTLanguageModel, path: Path) -> None:
    """model as one ONNX graph with its KV cache (torch.onnx: the dynamo exporter, float32)."""
    config = model.config
    inputs, outputs = onnx_names(config.n_layer)
    B, T, P = 2, 3, 4  # example sizes; all three are dynamic in the graph (a first step has P = 0)
    past = [torch.zeros(B, config.n_head, P, config.head_size) for _ in range(2 * config.n_layer)]
    args = (torch.zeros(B, T, dtype=torch.long), torch.ones(B, P + T, dtype=torch.long),
            torch.arange(P, P + T).repeat(B, 1), *past)
    # dynamic sizes by name (torch.onnx leaves them to export, then names them in the graph): transformers.js fills
    # an empty past by these names, batch_size with the batch and every other name with 0
    batch, seq = {0: "batch_size", 1: "sequence_length"}, {0: "batch_size", 2: "past_sequence_length"}
    shapes = (batch, {0: "batch_size", 1: "total_sequence_length"}, batch, tuple(seq for _ in past))
    wrapper = _WithPast(model).eval()
    with torch.no_grad(), quiet():
        program = torch.onnx.export(wrapper, args, dynamo=True, input_names=inputs, output_names=outputs,
                                    dynamic_shapes=shapes, external_data=False, optimize=True, verbose=False)
    program.save(str(path), external_data=False)


def quantize(src: Path, dst: Path) -> None:
    """int8 weights, activations quantized on the fly (onnxruntime's dynamic quantization): about a quarter."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


class OnnxModel:
    """An exported graph run by onnxruntime, one forward at a time: logits and the next past."""

    def __init__(self, path: Path, config):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config, self.inputs = config, onnx_names(config.n_layer)[0]

    def empty_past(self, batch: int = 1):
        import numpy as np

        shape = (batch, self.config.n_head, 0, self.config.head_size)
        return [np.zeros(shape, dtype=np.float32) for _ in range(2 * self.config.n_layer)]

    def forward(self, ids: list[int], past=None):
        """(logits (T, vocab) of ids fed after past, the new past) for one row."""
        import numpy as np

        past = self.empty_past() if past is None else past
        P, T = past[0].shape[2], len(ids)
        feed = dict(zip(self.inputs, [np.array([ids], dtype=np.int64), np.ones((1, P + T), dtype=np.int64),
                                 np.arange(P, P + T, dtype=np.int64)[None], *past]))
        logits, *present = self.session.run(None, feed)
        return logits[0], present


# --- the whole folder ---


def check_prompts(model: GPTLanguageModel) -> list[list[int]]:
    """Token ids to compare logits on: a line of Shakespeare where the vocabulary has it, and a full window."""
    stoi = {c: i for i, c in enumerate(model.vocab)}
    line = [stoi[c] for c in "ROMEO:\nBut soft, what light through yonder window breaks?" if c in stoi] or [0]
    g = torch.Generator().manual_seed(0)
    return [line[:model.config.block_size],
            torch.randint(model.config.vocab_size, (model.config.block_size,), generator=g).tolist()]


def onnx_error(model: GPTLanguageModel, path: Path) -> float:
    """The largest difference of onnxruntime's logits from the graph at path against ours, on check_prompts."""
    import numpy as np

    onnx, error = OnnxModel(path, model.config), 0.0
    with torch.no_grad():
        for ids in check_prompts(model):
            logits, _ = onnx.forward(ids)
            error = max(error, float(np.abs(model(torch.tensor([ids]))[0][0].numpy() - logits).max()))
    return error


def reused(model: GPTLanguageModel, graph: Path | None, dst: Path) -> bool:
    """Copy graph (an earlier export's float32 graph: shipped or pulled beside the weights) to dst if onnxruntime
    gives our logits from it, as a fresh export must: tracing again takes 15 s to a minute on two cores."""
    if graph is None or not graph.is_file():
        return False
    shutil.copyfile(graph, dst)
    try:
        if onnx_error(model, dst) <= MAX_LOGIT_ERROR:
            return True
    except Exception:  # not a graph onnxruntime runs with our inputs (another export's, a damaged file): export anew
        pass
    dst.unlink()
    return False


def export(model: GPTLanguageModel, out: str | Path, *, overwrite: bool = False, graph: Path | None = None) -> dict:
    """Write the export folder `out` (made aside, then moved into place); returns what was measured:
    the largest logit difference of transformers and onnxruntime against ours, and the files' sizes.

    graph: an onnx/model.onnx that may already hold these weights, used instead of exporting when it does."""
    require_libraries()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty: choose another folder, or pass --overwrite to replace it")
    if not isinstance(model, GPTLanguageModel) or not model.vocab:
        raise ExportError("only a GPT with its vocabulary exports as a GPT-2 (the ladder's earlier rungs do not)")
    model = copy.deepcopy(model).float().eval()  # the caller's model (perhaps a served copy) stays as it was
    gpt2, state, fold_error = hf_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        gpt2.config.save_pretrained(tmp)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})  # as save_pretrained, without its bar
        generation_config(model).save_pretrained(tmp)
        hf_tokenizer(model.vocab).save_pretrained(tmp)
        (tmp / ONNX_DIR).mkdir()
        graph_path = tmp / ONNX_DIR / ONNX_FILE
        if not reused(model, graph, graph_path):
            export_onnx(model, graph_path)
        quantize(graph_path, tmp / ONNX_DIR / QUANTIZED_FILE)
        errors = {"transformers": 0.0, "onnxruntime": onnx_error(model, graph_path)}
        with torch.no_grad():
            for ids in check_prompts(model):
                ours, theirs = model(torch.tensor([ids]))[0][0], gpt2(torch.tensor([ids])).logits[0]
                errors["transformers"] = max(errors["transformers"], (ours - theirs).abs().max().item())
        for who, error in errors.items():
            if not error <= MAX_LOGIT_ERROR:
                raise ExportError(f"{who}'s logits differ from ours by {error:.2g} (more than {MAX_LOGIT_ERROR}): "
                                  f"not exported")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sizes = {name: (out / name).stat().st_size for name in EXPORTED}
    return {"max_logit_error": errors, "fold_error": fold_error, "bytes": sizes}


_made: OrderedDict[str, dict[str, bytes]] = OrderedDict()  # the last exports, by the weights they hold
_made_lock = threading.Lock()  # one export at a time: a server's pushes queue instead of sharing its CPU
KEEP = 2  # exports remembered (about 2.3x the weights' size each)


def fingerprint(model: GPTLanguageModel) -> str:
    """What an export depends on: the settings, the vocabulary and every tensor."""
    h = hashlib.sha256(repr((model.config, model.vocab)).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def repo_files(model: GPTLanguageModel, graph: Path | None = None) -> dict[str, bytes]:
    """The export folder's files, as a Hub push uploads them beside the card (made aside, read back). The same
    weights pushed again (the shipped ones, by visitor after visitor) reuse the last export; graph as export's."""
    key = fingerprint(model)
    with _made_lock:
        if key not in _made:
            with tempfile.TemporaryDirectory(prefix="gpt-export.") as tmp:
                export(model, Path(tmp) / "out", graph=graph)
                _made[key] = {name: (Path(tmp) / "out" / name).read_bytes() for name in EXPORTED}
            while len(_made) > KEEP:
                _made.popitem(last=False)
        _made.move_to_end(key)
        return dict(_made[key])


def try_repo_files(model: GPTLanguageModel, graph: Path | None = None) -> tuple[dict[str, bytes], str | None]:
    """(repo_files(model, graph), None), or ({}, why not): a push without them still serves our own code."""
    if not available():
        return {}, f"the export extra is not installed ({EXTRA})"
    try:
        return repo_files(model, graph), None
    except ExportError as e:
        return {}, str(e)
