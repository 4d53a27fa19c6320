"""Weights on disk: `model.safetensors` + `config.json` (+ `README.md`), and the training state for resume.

No pickle anywhere: tensors are safetensors, everything else is JSON. Every file is written to a temporary
name beside it and renamed into place, so a crash or kill mid-save leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gpt.config import CONFIG_FILE, GPTConfig, check_gpt, config_json, parse_config, read_config, read_raw_config
from gpt.errors import ConfigError, WeightsError
from gpt.sharing.gpt2 import from_gpt2, is_gpt2
from gpt.model import GPTLanguageModel

__all__ = ["MODEL_FILE", "CONFIG_FILE", "CARD_FILE", "STATE_FILE", "START_FILE", "NAME", "portable_name", "check_name", "atomic_write",
           "save_error", "remove_temporary_files", "atomic_write_text", "save_weights", "locate", "read_config", "read_raw_config", "read_state_dict",
           "check_state_dict", "check_uploaded_weights", "save_training_state", "read_training_meta", "load_training_state", "save_start_embedding", "read_start_embedding", "list_weights", "default_weights",
           "describe_source"]

MODEL_FILE = "model.safetensors"
CARD_FILE = "README.md"
STATE_FILE = "training_state.safetensors"  # latest model + optimizer + RNG, for --resume
START_FILE = "embedding_step0.safetensors"  # the token embedding table a run began with (gpt.insides.characters.start_map)
PICKLE_FILES = ("pytorch_model.bin", "model.pt", "model.pth", "ckpt.pt")
TMP_SUFFIX = ".tmp"  # atomic_write's temporary files: .<name>.<random>.tmp beside the file they will replace


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp over path: readers see the old file or the new, never half.

    A failure (a full disk, no permission) is a WeightsError saying what was not saved; the old file stays.
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, 0o644)  # mkstemp makes files private; weights are meant to be shared
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        raise save_error(path, e) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def save_error(path: Path, error: Exception) -> WeightsError:
    """One line for a write that failed: what, where, why, and that what was saved before is intact."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    io = re.search(r"I/O error: (.+?) \(os error \d+\)", reason)  # safetensors wraps the system's message
    reason = io.group(1) if io else reason
    reason = reason[:1].lower() + reason[1:]
    before = (f"the {path.name} saved before is intact" if path.exists()
              else "the weights saved before in that folder are intact" if (path.parent / MODEL_FILE).exists()
              else "nothing had been saved there yet")
    return WeightsError(f"could not save {path.name} in {path.parent} ({reason}); {before}")


def remove_temporary_files(folder: str | Path, older_than: float = 0.0) -> list[Path]:
    """Delete the temporary files a kill in the middle of a save left behind (.model.safetensors.*.tmp).

    older_than (seconds): spare younger ones, which another process may still be writing.
    """
    folder, now = Path(folder), time.time()
    stale = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file() and now - p.stat().st_mtime >= older_than] \
        if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a weights folder's name: never a path
# device names Windows reserves, with or without an extension ("CON", "nul.txt"): such a folder cannot be made there
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def portable_name(name: str) -> bool:
    """True if name is a folder name on every system: ours (NAME), not a Windows device, no trailing dot."""
    return bool(NAME.fullmatch(name)) and name.split(".")[0].upper() not in WINDOWS_RESERVED \
        and not name.endswith(".")


def check_name(name: str, what: str = "run name") -> str:
    """name, stripped, if it can name a folder under weights/; else a ConfigError saying what can."""
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise ConfigError(f"{what} {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                          f"letter or digit")
    if not portable_name(name):
        raise ConfigError(f"{what} {name!r} cannot name a folder on Windows (CON, PRN, AUX, NUL, COM1-9 and LPT1-9 "
                          f"are devices there, and a name may not end with '.'): choose another")
    return name


def save_weights(model: torch.nn.Module, folder: str | Path, *, card: str | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write model.safetensors and config.json (and the model card, if given) into folder."""
    folder = Path(folder)
    if model.vocab is None:
        raise WeightsError("this model has no vocabulary attached, so its weights could not be used to read text")
    tensors = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / MODEL_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    rung = {"rung": model.rung} if hasattr(model, "rung") else {}  # the lecture ladder's earlier models
    atomic_write_text(folder / CONFIG_FILE, config_json(model.config, model.vocab, **rung))
    if card is not None:
        atomic_write_text(folder / CARD_FILE, card)
    return folder


def locate(name_or_path: str | Path, *, revision: str | None = None, token: str | None = None,
           cache_dir: str | Path | None = None, force_download: bool = False, local_files_only: bool = False) -> Path:
    """A local weights folder as is, or a Hub repo id downloaded (safetensors and JSON only) into the cache.

    local_files_only: the cached copy or an error, without touching the network."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise WeightsError(f"{path} is a file; give the folder that holds {MODEL_FILE} and {CONFIG_FILE}")
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/", "~")) or "\\" in name:
        raise WeightsError(f"no weights folder at {path}, and {name!r} is not a Hub repo id like 'user/model'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        return Path(snapshot_download(name, revision=revision, token=token, cache_dir=cache_dir,
                                      force_download=force_download, local_files_only=local_files_only,
                                      allow_patterns=[MODEL_FILE, CONFIG_FILE, CARD_FILE]))
    except HFValidationError as e:
        raise WeightsError(f"no weights folder at {path}, and {name!r} is not a valid Hub repo id: {e}") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"no weights folder at {path}, and no Hub repo {name!r} (or it is private)") from None
    except RevisionNotFoundError:
        raise WeightsError(f"the Hub repo {name!r} has no revision {revision!r}") from None
    except HfHubHTTPError as e:
        raise WeightsError(f"could not download {name!r} from the Hub: {e}") from None
    except LocalEntryNotFoundError:
        if local_files_only:
            raise WeightsError(f"{name!r} is not in the Hub cache{f' at {cache_dir}' if cache_dir else ''}, and "
                               f"local_files_only forbids downloading it") from None
        raise WeightsError(f"no weights folder at {path}, and the Hub could not be reached for {name!r}") from None
    except OSError as e:  # offline, DNS, connection refused
        raise WeightsError(f"no weights folder at {path}, and the Hub could not be reached for {name!r}: {e}") from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        pickles = [p for p in PICKLE_FILES if (path.parent / p).exists()]
        hint = f" (it has {pickles[0]}, a pickle file, which we never load: it can run code)" if pickles else ""
        raise WeightsError(f"{path.parent} has no {path.name}{hint}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({e}); it may be truncated, corrupt, or a pickle, "
            f"which we never load"
        ) from None


def read_state_dict(folder: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors, checked name by name and shape by shape against model."""
    path = Path(folder) / MODEL_FILE
    state = _load_safetensors(path)
    if is_gpt2(state):  # a folder written by gpt.export (a Hub repo that transformers reads too)
        state = from_gpt2(state, model.config, path)
    check_state_dict(state, model, path)
    return state


def check_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, where) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} is {tuple(state[k].shape)}, expected {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}")
    if wrong:
        problems.append("; ".join(wrong[:5]))
    if problems:
        raise WeightsError(f"{where} does not match its config.json: " + "; ".join(problems))


# --- weights a stranger uploads (a run trained in their browser, to push): checked before anything touches them ---

MAX_CONFIG_BYTES = 1_000_000  # config.json: a vocabulary of many thousand characters still fits
MAX_HEADER_BYTES = 1_000_000  # safetensors' JSON header: names, shapes and offsets only
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}  # what our model.safetensors may hold
UPLOAD_HINT = "upload the model.safetensors and config.json of a run's Download (zip), as they are"


def check_uploaded_weights(model_file: str | Path, config_file: str | Path,
                           max_bytes: int = 100_000_000) -> tuple[GPTConfig, list[str]]:
    """(GPTConfig, vocabulary) of an uploaded model.safetensors and config.json, or a WeightsError saying why not.

    Safe on anything: sizes are bounded before a byte is read, the safetensors header is parsed here as JSON (a
    pickle, a torch .bin or random bytes fail that; nothing is ever unpickled), and its tensors must be exactly
    the names, shapes and byte ranges of the model config.json describes. Nothing is written.
    """
    model_file, config_file = Path(model_file), Path(config_file)
    size, config_size = model_file.stat().st_size, config_file.stat().st_size
    if config_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{CONFIG_FILE} is {config_size / 1e6:.1f} MB; ours are a few kB: {UPLOAD_HINT}")
    config, vocab, raw = parse_config(config_file.read_bytes(), CONFIG_FILE)
    check_gpt(raw, CONFIG_FILE)
    with torch.device("meta"):  # the shapes config.json describes, without a byte of memory for the weights
        expected = {k: (tuple(v.shape), v.numel()) for k, v in GPTLanguageModel(config).state_dict().items()}
    data_bytes = sum(n for _, n in expected.values()) * 4
    if size > min(max_bytes, 8 + MAX_HEADER_BYTES + data_bytes):  # float32 is the largest we take
        raise WeightsError(f"{MODEL_FILE} is {size / 1e6:.1f} MB, more than the model its {CONFIG_FILE} describes "
                           f"can take ({data_bytes / 1e6:.1f} MB of float32; the limit here is "
                           f"{max_bytes / 1e6:.0f} MB): {UPLOAD_HINT}")
    not_ours = (f"{MODEL_FILE} is not a safetensors file (a pickle, a torch .bin or .pt file, or other bytes: "
                f"we never load those, they can run code): {UPLOAD_HINT}")
    with open(model_file, "rb") as f:
        start = f.read(8)
        n = int.from_bytes(start, "little") if len(start) == 8 else 0
        if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
            raise WeightsError(not_ours)
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WeightsError(not_ours) from None
    if not isinstance(header, dict):
        raise WeightsError(not_ours)
    header.pop("__metadata__", None)
    spans, problems = [], []
    for name, info in header.items():
        try:
            dtype, shape, (a, b) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            numel = 1
            for d in shape:
                numel *= d
            ok = dtype in DTYPE_BYTES and all(isinstance(x, int) and x >= 0 for x in (*shape, a, b)) \
                and b - a == numel * DTYPE_BYTES[dtype]
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise WeightsError(f"{MODEL_FILE}: the entry for {name!r} is not a float32, float16 or bfloat16 tensor "
                               f"with consistent offsets: {UPLOAD_HINT}")
        spans.append((a, b))
    for name, (shape, _) in expected.items():  # in the model's order: the embedding first
        if name not in header:
            problems.append(f"missing {name}")
        elif tuple(header[name]["shape"]) != shape:
            problems.append(f"{name} is {tuple(header[name]['shape'])}, expected {shape}")
    problems += [f"unexpected {name}" for name in header if name not in expected]
    if problems:
        raise WeightsError(f"{MODEL_FILE} does not match its {CONFIG_FILE} ({'; '.join(problems[:5])}"
                           f"{' …' if len(problems) > 5 else ''}): upload the two files of one run, as its Download "
                           f"(zip) holds them")
    end = 0
    for a, b in sorted(spans):  # the tensors tile the data exactly: no gap, no overlap, nothing after
        if a != end:
            raise WeightsError(f"{MODEL_FILE}'s tensors overlap or leave gaps: {UPLOAD_HINT}")
        end = b
    if 8 + n + end != size:
        raise WeightsError(f"{MODEL_FILE} is {size:,} bytes but its header describes {8 + n + end:,}: it is "
                           f"truncated or has bytes added; {UPLOAD_HINT}")
    return config, vocab


# --- training state for --resume: one file, so model, optimizer and RNG always agree ---


def save_training_state(folder: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        rng: dict[str, torch.Tensor], meta: dict, average: torch.nn.Module | None = None) -> None:
    """Everything --resume needs: weights, optimizer moments, random states, meta, and the weights' average."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if average is not None:
        tensors.update({f"average.{k}": v.detach().cpu().contiguous() for k, v in average.state_dict().items()})
    opt = optimizer.state_dict()
    for i, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optimizer.{i}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for name, value in rng.items():
        tensors[f"rng.{name}"] = value.cpu().contiguous()
    metadata = {"meta": json.dumps(meta), "param_groups": json.dumps(opt["param_groups"])}
    atomic_write(Path(folder) / STATE_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _state_metadata(path: Path) -> dict:
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        return {"meta": json.loads(metadata["meta"]), "param_groups": json.loads(metadata["param_groups"])}
    except (KeyError, json.JSONDecodeError):
        raise WeightsError(f"{path} lacks the training metadata this project writes") from None
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file ({e})") from None


def read_training_meta(folder: str | Path) -> dict:
    """step, best_val, elapsed and the TrainConfig of a saved run, without reading its tensors."""
    return _state_metadata(Path(folder) / STATE_FILE)["meta"]


def load_training_state(folder: str | Path) -> tuple[dict, dict, dict[str, torch.Tensor], dict, dict | None]:
    """(model state_dict, optimizer state_dict, rng tensors, meta, the average's state_dict or None) from
    training_state.safetensors."""
    path = Path(folder) / STATE_FILE
    tensors = _load_safetensors(path)
    metadata = _state_metadata(path)
    meta, param_groups = metadata["meta"], metadata["param_groups"]
    model_state, opt_state, rng, average = {}, {}, {}, {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "model":
            model_state[rest] = value
        elif kind == "average":
            average[rest] = value
        elif kind == "optimizer":
            i, _, name = rest.partition(".")
            opt_state.setdefault(int(i), {})[name] = value
        elif kind == "rng":
            rng[rest] = value
    return model_state, {"state": opt_state, "param_groups": param_groups}, rng, meta, average or None


# --- the token embedding table at step 0: its map beside the map at the end shows what training did ---

START_TENSOR = "token_embedding_table.weight"


def save_start_embedding(folder: str | Path, table: torch.Tensor) -> None:
    """The (vocab_size, n_embd) table a run begins with, kept beside its weights (a few kB to a few hundred)."""
    tensors = {START_TENSOR: table.detach().to("cpu", torch.float32).contiguous()}
    atomic_write(Path(folder) / START_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


def read_start_embedding(folder: str | Path) -> torch.Tensor | None:
    """The table a run began with, or None where the folder keeps none (shipped or pulled weights, older runs)."""
    path = Path(folder) / START_FILE
    if not path.is_file():
        return None
    tensors = _load_safetensors(path)
    if START_TENSOR not in tensors or tensors[START_TENSOR].ndim != 2:
        raise WeightsError(f"{path} holds no {START_TENSOR} table")
    return tensors[START_TENSOR]


# --- weights folders: what is there ---


def default_weights() -> Path:
    """The weights that ship with the project: weights/default of a clone, or the copy `pip install` put in gpt/."""
    package = Path(__file__).resolve().parent.parent  # gpt/
    clone = package.parent / "weights" / "default"
    return clone if (clone / MODEL_FILE).is_file() else package / "default_weights"


def list_weights(root: str | Path = "weights") -> list[str]:
    """Names of the weights folders under root: 'default' first, then the newest first."""
    root = Path(root)
    folders = [p for p in root.iterdir() if (p / MODEL_FILE).is_file() and (p / CONFIG_FILE).is_file()] \
        if root.is_dir() else []
    folders.sort(key=lambda p: (p.name != "default", -(p / MODEL_FILE).stat().st_mtime))
    return [p.name for p in folders]


def new_run_name(preset: str) -> str:
    """The folder name of a run nobody named: its preset and when it started, cpu-20261202-153000."""
    return f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")  # user/name on the Hub


def describe_source(name_or_path: str | Path) -> str:
    """Where weights came from, for a card: 'weights/NAME', 'user/repo on the Hub', or both for a pulled repo."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir() and REPO_ID.fullmatch(str(name_or_path)):
        return f"{name_or_path} on the Hub"
    local = f"weights/{path.name}"
    if (path / STATE_FILE).exists() or not (path / CARD_FILE).is_file():
        return local  # trained here: pulled folders never hold a training state
    from huggingface_hub.repocard import metadata_load

    try:  # the card of a pushed repo names the repo (gpt.sharing.card.card_metadata)
        repo = str(((metadata_load(path / CARD_FILE) or {}).get("model-index") or [{}])[0].get("name", ""))
    except Exception:  # a card we cannot read only costs the mention
        repo = ""
    return f"{local}, pulled from {repo} on the Hub" if REPO_ID.fullmatch(repo) and repo != local else local
