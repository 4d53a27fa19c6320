"""Share on the Hugging Face Hub: push a weights folder, pull a repo into weights/.

    python -m gpt.hub push weights/my-run user/my-gpt [--private] [--message "..."]
    python -m gpt.hub pull user/my-gpt [--revision main] [--name my-gpt] [--overwrite]

(Publishing the app as a Space lives with the app: `python -m webapp.space`, built on upload() here.)

The token comes from HF_TOKEN (or `hf auth login`); functions also take it as an argument. We never write it
anywhere, print it, or put it in a card, commit or message. Only safetensors and JSON (and the card and its
picture) are fetched from a repo: nothing pulled can run code.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import httpx2  # the HTTP client huggingface_hub 2.x uses
from huggingface_hub import CommitOperationAdd, HfApi, constants, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import tqdm as hf_tqdm

from gpt.sharing.card import CURVE_FILE, card_files, params_text
from gpt.training import log as runlog
from gpt.training.log import METRICS_FILE, check_log, read_log
from gpt.errors import GPTError, HubError, WeightsError, command
from gpt.sharing.export_folder import ONNX_DIR, ONNX_FILE, try_repo_files
from gpt.sharing.pretrained import GPT
from gpt.sharing.weights import CARD_FILE, CONFIG_FILE, MODEL_FILE, REPO_ID, check_uploaded_weights, portable_name

SHARED_FILES = [MODEL_FILE, CONFIG_FILE, CARD_FILE, CURVE_FILE, METRICS_FILE]  # what a repo of ours always holds
BROWSER_FILE = f"{ONNX_DIR}/{ONNX_FILE}"  # an exported repo's graph, pulled too: the app's Generate runs it in the browser
PULLED = SHARED_FILES + [BROWSER_FILE]
UPLOADED = [MODEL_FILE, CONFIG_FILE, METRICS_FILE]  # what push_upload takes: a browser run's Download
ORIGIN_FILE = "origin.json"  # written by pull: the repo and commit a weights folder came from
Progress = Callable[[float, str], None]


def check_repo_id(repo_id: str, what: str = "repo") -> str:
    repo_id = (repo_id or "").strip()
    if not REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith((".", ".git")):
        raise HubError(f"{repo_id!r} is not a Hub {what} id: write it as user/name (letters, digits, '-', '_', '.')")
    return repo_id


def quiet(progress: Progress | None) -> Progress:
    return progress or (lambda fraction, message: None)


@contextmanager
def hub_errors(action: str, repo_id: str, token: str | None, revision: str | None = None):
    """Turn what the Hub client raises into a HubError a person can act on, with no token in it."""
    try:
        yield
    except GPTError:
        raise
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, httpx2.HTTPError, OSError) as e:
        raise HubError(_scrub(_explain(e, action, repo_id, revision), token)) from None


def _explain(e: Exception, action: str, repo_id: str, revision: str | None) -> str:
    if isinstance(e, LocalEntryNotFoundError) and e.__cause__ is not None:
        e = e.__cause__  # a download that fell back to the cache: the reason is the original error
    if isinstance(e, HFValidationError):
        return f"{repo_id!r} is not a valid Hub repo id: {e}"
    if isinstance(e, RevisionNotFoundError):
        return f"{repo_id} has no revision {revision!r} (a branch, tag or commit)"
    if isinstance(e, HfHubHTTPError) and e.response is not None:
        status = e.response.status_code
        server = e.response.headers.get("X-Error-Message") or ""
        if status == 401:
            return (f"The Hub refused to {action} {repo_id} (401): the token is missing, mistyped or expired"
                    f"{' — or the repo is private' if action == 'pull' else ''}. Paste a token from "
                    f"https://huggingface.co/settings/tokens, or set HF_TOKEN.")
        if status == 403:
            return (f"The token may not {action} {repo_id} (403): it needs write access, and the repo must belong to "
                    f"the token's user or one of their organisations.")
        if status == 404:
            return f"No repo {repo_id} on the Hub (404), or it is private and this token cannot see it."
        return f"The Hub answered {status} when asked to {action} {repo_id}: {server or e}"
    if isinstance(e, (httpx2.TransportError, LocalEntryNotFoundError)):
        return (f"Could not reach the Hub at {constants.ENDPOINT} to {action} {repo_id}: check the internet "
                f"connection (or HF_ENDPOINT). ({type(e).__name__})")
    return f"Could not {action} {repo_id}: {e}"


def _scrub(text: str, token: str | None) -> str:
    for secret in {token, os.environ.get("HF_TOKEN")} - {None, ""}:
        text = text.replace(secret, "***")
    return text


class ByteCount:
    """Bytes a huggingface_hub download has written so far, counted by the progress bars it draws anyway.

    `bar` is the tqdm class to pass as `tqdm_class`: huggingface_hub's own bar (shown in a terminal, quiet in a
    server), which also adds every update of its file bytes here, from whichever thread downloads.
    """

    def __init__(self):
        self.done, self.lock = 0, threading.Lock()
        count = self

        class Bar(hf_tqdm):
            def __init__(self, *args, **kwargs):
                # the bar of bytes written (not the file count, nor the network bytes, which compression changes)
                self.counts = kwargs.get("unit") == "B" and str(kwargs.get("desc", "")).startswith("Reconstruct")
                super().__init__(*args, **kwargs)

            def update(self, n=1):
                if self.counts and n:
                    count.add(n)
                return super().update(n)

        self.bar = Bar

    def add(self, n: int) -> None:
        with self.lock:  # downloads and uploads update from several threads
            self.done += n


class CountingReader(io.BufferedReader):
    """A file (or bytes made for the upload) opened for reading that adds the bytes read to a ByteCount."""

    def __init__(self, src: Path | bytes, count: ByteCount):
        super().__init__(io.BytesIO(src) if isinstance(src, bytes) else io.FileIO(src, "rb"))
        self.count, self.size = count, len(src) if isinstance(src, bytes) else src.stat().st_size

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.count.add(len(data))
        return data


POLL_S = 0.25  # how often a transfer's progress is reported


def watched(work: Callable, report: Callable[[], None]):
    """work() in a thread while this one calls report() every POLL_S seconds and once at the end; work's result
    (or its error).

    The progress callback runs in the caller's thread: gr.Progress only reaches the page from the handler's own.
    """
    result: dict = {}

    def run():
        try:
            result["value"] = work()
        except BaseException as e:  # handed to the caller below
            result["error"] = e

    thread = threading.Thread(target=run, name="hub-transfer", daemon=True)
    thread.start()
    while thread.is_alive():
        report()
        thread.join(POLL_S)
    if "error" in result:
        raise result["error"]
    report()
    return result["value"]


def check_weights(folder: str | Path) -> tuple[Path, GPT]:
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"no weights folder at {folder}")
    return folder, GPT.from_pretrained(folder)  # config, vocabulary and every tensor checked


def repo_files(folder: Path, model: GPT, name: str, progress: Progress | None = None) -> dict[str, bytes | Path]:
    """What goes into a repo: weights, config, a card naming `name`, and the run's loss curve and log; with the
    export extra installed, as export_folder.py writes them, so transformers, transformers.js and onnxruntime load
    the same repo (its model.safetensors and config.json are then GPT-2's, which GPT.from_pretrained reads too)."""
    progress = quiet(progress)
    files: dict[str, bytes | Path] = {MODEL_FILE: folder / MODEL_FILE, CONFIG_FILE: folder / CONFIG_FILE}
    progress(0.15, "exporting for transformers and ONNX")
    exported, why_not = try_repo_files(model, folder / BROWSER_FILE)  # a shipped or pulled graph: not made again
    files.update(exported)
    if why_not:
        progress(0.2, f"without the transformers and ONNX files: {why_not}")
    log = read_log(folder)
    files.update(card_files(model.config, model.vocab, log, name, bool(exported)))  # as GPT.push_to_hub's
    if log is not None:
        files[METRICS_FILE] = runlog.path(folder)
    return files


def upload(repo_id: str, make_files: Callable[[], dict[str, bytes | Path]], *, repo_type: str, token: str | None,
           private: bool, message: str, action: str, progress: Progress) -> str:
    """Create the repo if needed and commit make_files() to it in one commit. Returns the repo's URL.

    The files are made once the Hub has taken the token and the repo: a refusal, or no network, is said at once,
    not after the export's half minute."""
    api = HfApi(token=token)
    with hub_errors(action, repo_id, token):
        progress(0.07, f"creating {repo_id}")
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True,
                              space_sdk="gradio" if repo_type == "space" else None)
    files = make_files()
    with hub_errors(action, repo_id, token):
        size = sum(len(v) if isinstance(v, bytes) else v.stat().st_size for v in files.values())
        progress(0.3, f"uploading {len(files)} files ({size / 1e6:.1f} MB)")
        count = ByteCount()
        # files as readers that count what is read: the upload reads them in chunks as it sends them, so the bytes
        # read are the bytes sent (huggingface_hub sends file objects over HTTP (LFS), not Xet: a warning says so)
        big = {path: src for path, src in files.items() if not isinstance(src, bytes) or len(src) > 2**16}
        readers = {path: CountingReader(src, count) for path, src in big.items()}  # the card and such: as they are
        try:
            operations = [CommitOperationAdd(path, readers.get(path, src)) for path, src in files.items()]
            count.done = 0  # making the operations read every file once, to hash it
            sent = sum(r.size for r in readers.values())
            watched(lambda: api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type),
                    lambda: progress(0.3 + 0.65 * min(1.0, count.done / max(sent, 1)),
                                     f"uploading to {repo_id}: {count.done / 1e6:.1f} of {sent / 1e6:.1f} MB"))
            if count.done < sent:  # the Hub already held a file with the same bytes: it was not sent again
                progress(0.95, f"uploaded to {repo_id}: {(sent - count.done) / 1e6:.1f} MB were already there")
        finally:
            for reader in readers.values():
                reader.close()
    progress(1.0, "done")
    return str(url)


def push(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
         message: str | None = None, progress: Progress | None = None) -> str:
    """Upload a weights folder to the model repo repo_id (created if needed). Returns the repo's URL."""
    progress = quiet(progress)
    repo_id = check_repo_id(repo_id)
    progress(0.05, "checking the weights")
    folder, model = check_weights(folder)
    message = message or f"Upload {folder.name}: a {params_text(model.num_params())}-parameter character-level GPT"
    return upload(repo_id, lambda: repo_files(folder, model, repo_id, progress), repo_type="model",
                  token=token or None, private=private, message=message, action="push to", progress=progress)


def check_upload(files: dict[str, Path], max_bytes: int = 100_000_000) -> None:
    """A WeightsError unless files ({name: path}) are a weights folder's model.safetensors and config.json (and
    maybe its metrics.jsonl), within max_bytes in all, each checked without loading anything that could run code."""
    unexpected = sorted(set(files) - set(UPLOADED))
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if name not in files]
    if unexpected or missing:
        said = "; ".join(filter(None, [f"unexpected {', '.join(unexpected)}" if unexpected else "",
                                       f"missing {', '.join(missing)}" if missing else ""]))
        raise WeightsError(f"upload {', '.join(UPLOADED[:2])} and (if you have it) {METRICS_FILE}, named so: the "
                           f"files of a run's Download (zip), unzipped ({said})")
    size = sum(Path(p).stat().st_size for p in files.values())
    if size > max_bytes:
        raise WeightsError(f"the files are {size / 1e6:.1f} MB in all; the limit here is {max_bytes / 1e6:.0f} MB")
    check_uploaded_weights(files[MODEL_FILE], files[CONFIG_FILE], max_bytes)
    if METRICS_FILE in files:
        check_log(Path(files[METRICS_FILE]).read_bytes())  # within max_bytes: checked above


def push_upload(files: dict[str, Path], repo_id: str, *, token: str | None = None, private: bool = False,
                message: str | None = None, progress: Progress | None = None, max_bytes: int = 100_000_000) -> str:
    """Push uploaded files ({name: path}, e.g. a run trained in a browser) to the model repo repo_id: checked
    first (check_upload; a refusal writes nothing anywhere), then pushed as a weights folder. Returns the URL."""
    repo_id = check_repo_id(repo_id)
    check_upload(files, max_bytes)
    with tempfile.TemporaryDirectory(prefix="upload-") as scratch:
        folder = Path(scratch) / repo_id.split("/")[1]
        folder.mkdir()
        for name, path in files.items():
            shutil.copyfile(path, folder / name)
        return push(folder, repo_id, token=token, private=private, message=message, progress=progress)


def pull(repo_id: str, *, revision: str | None = None, name: str | None = None, root: str | Path = "weights",
         token: str | None = None, overwrite: bool = False, progress: Progress | None = None,
         max_bytes: int | None = None) -> Path:
    """Download a repo of ours into root/name (name: the repo's name), check it, and return the folder.

    max_bytes refuses, before downloading, a repo whose files we would fetch are larger in all.
    """
    progress = quiet(progress)
    repo_id = check_repo_id(repo_id)
    token, revision = token or None, (revision or "").strip() or None
    name = (name or "").strip() or repo_id.split("/")[1]
    if not portable_name(name) or name == "default":
        raise HubError(f"{name!r} cannot name a weights folder: use 1-64 letters, digits, '.', '_' or '-' "
                       f"(not 'default', which ships with the app, nor a name Windows keeps for a device, like CON)")
    root = Path(root)
    dest = root / name
    if dest.exists() and not overwrite:
        raise HubError(f"weights/{name} already exists: choose another name, or allow replacing it")
    root.mkdir(parents=True, exist_ok=True)
    # a scratch Hugging Face cache beside the weights (the same disk: the final rename is atomic), removed when done:
    # a server pulling for its visitors keeps one copy of each pull, under its weights folder whose space it
    # bounds, not a second one in a cache that would grow with every pull
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=root, ignore_cleanup_errors=True) as scratch:
        progress(0.05, f"looking up {repo_id}")
        with hub_errors("pull", repo_id, token, revision):
            size = sum(getattr(f, "size", 0) or 0 for f in HfApi(token=token).list_repo_tree(
                repo_id, revision=revision, recursive=True) if f.path in PULLED)
            if max_bytes is not None and size > max_bytes:
                raise HubError(f"{repo_id} is {size / 1e6:.1f} MB; the limit here is {max_bytes / 1e6:.1f} MB")
            count = ByteCount()
            snapshot = Path(watched(
                lambda: snapshot_download(repo_id, revision=revision, token=token, allow_patterns=PULLED,
                                          cache_dir=Path(scratch) / "cache", tqdm_class=count.bar),
                lambda: progress(0.1 + 0.7 * min(1.0, count.done / max(size, 1)),
                                 f"downloading {repo_id}: {count.done / 1e6:.1f} of {size / 1e6:.1f} MB")))
        progress(0.8, "checking the weights")
        try:
            check_weights(snapshot)
        except WeightsError as e:
            raise HubError(f"{repo_id} is not a GPT of this project: {str(e).replace(str(snapshot), repo_id)}") \
                from None
        staging = Path(scratch) / name
        staging.mkdir()
        for file in PULLED:
            if (snapshot / file).is_file():
                (staging / file).parent.mkdir(exist_ok=True)
                shutil.copyfile(snapshot / file, staging / file)  # copies the bytes, not the cache's symlinks
        (staging / ORIGIN_FILE).write_text(json.dumps({"repo_id": repo_id, "revision": snapshot.name}) + "\n")
        os.chmod(staging, 0o755)
        old = root / f".{name}.old"
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    progress(1.0, "done")
    return dest


def origin(folder: str | Path) -> str | None:
    """The Hub repo id a weights folder was pulled from, or None for weights made here."""
    try:
        repo_id = json.loads((Path(folder) / ORIGIN_FILE).read_text(encoding="utf-8"))["repo_id"]
        return check_repo_id(repo_id)
    except (OSError, ValueError, KeyError, TypeError, HubError):
        return None


def terminal_progress() -> Progress:
    """Progress as lines on stderr: a new line for each phase and every 10% of a transfer, not four a second."""
    last = {"phase": None, "fraction": -1.0}

    def say(fraction: float, message: str) -> None:
        phase = message.split(":")[0]
        if phase != last["phase"] or fraction - last["fraction"] >= 0.1 or fraction >= 1.0:
            print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)
            last.update(phase=phase, fraction=fraction)
    return say


@command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("push", help="upload a weights folder to a model repo")
    p.add_argument("folder")
    p.add_argument("repo_id", help="user/name")
    p.add_argument("--private", action="store_true")
    p.add_argument("--message", help="commit message")
    p = commands.add_parser("pull", help="download a model repo into weights/")
    p.add_argument("repo_id")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--name", help="folder under weights/ (default: the repo's name)")
    p.add_argument("--root", default="weights", help="where weights folders live (default: weights)")
    p.add_argument("--overwrite", action="store_true", help="replace weights/<name> if it exists")
    args = parser.parse_args(argv)
    say = terminal_progress()
    if args.command == "push":
        print(push(args.folder, args.repo_id, private=args.private, message=args.message, progress=say))
    else:
        dest = pull(args.repo_id, revision=args.revision, name=args.name, root=args.root,
                    overwrite=args.overwrite, progress=say)
        print(f"{dest}  (try: python -m gpt.generate --weights {dest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
