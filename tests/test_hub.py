"""Sharing on the Hub, with the real huggingface_hub client against tests/hub_server.py, a local stand-in that
speaks the Hub's HTTP protocol (the real Hub cannot be reached from the test machines)."""

import hashlib
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, constants, metadata_load, snapshot_download
from PIL import Image

from conftest import ROOT, TOKENS, run_main
from serve import serving
from gpt import GPT, HubError
from gpt.sharing.card import best_eval
from gpt.training.log import read_log
from gpt.sharing.hub import pull, push
from webapp.space import publish_space
from gpt.generation.decode import generate_text
from gpt.generation.precision import inference_model, serving_dtype
from gpt.training.trainer import TrainConfig, Trainer


def same_weights(a, b) -> bool:
    return a.state_dict().keys() == b.state_dict().keys() and all(
        torch.equal(t, b.state_dict()[k]) for k, t in a.state_dict().items())


def served(model):
    """The copy the app generates with."""
    return inference_model(model, serving_dtype(model))


WRITE, READ, BOB = list(TOKENS)
DEFAULT = ROOT / "weights" / "default"


@pytest.fixture(scope="module")
def run(tmp_path_factory, shakespeare):
    """A short real training run: weights, card, loss curve and its log."""
    out = tmp_path_factory.mktemp("runs") / "tiny-run"
    config = TrainConfig.from_preset("tiny", max_iters=30, eval_interval=10, eval_iters=4, sample_length=40)
    Trainer(config, out).run()
    return out


def repo(server, repo_id, kind="model"):
    return server.state.repos[(kind, repo_id)]


def sample(model):
    return generate_text(model, "ROMEO:", max_new_tokens=80, temperature=0.8, top_k=40, seed=7)[0]


def test_push_then_pull_gives_identical_weights_and_the_same_text(hub_server, run, tmp_path):
    url = push(run, "alice/tiny", token=WRITE)
    assert url.endswith("/alice/tiny")
    dest = pull("alice/tiny", root=tmp_path / "weights", token=READ)
    assert dest == tmp_path / "weights" / "tiny"
    for name in ("model.safetensors", "config.json", "loss_curve.png", "metrics.jsonl"):
        assert (dest / name).read_bytes() == (run / name).read_bytes(), name
    assert sample(GPT.from_pretrained(dest)) == sample(GPT.from_pretrained(run))


def test_the_pushed_repo_holds_weights_config_card_and_curve(hub_server, run):
    push(run, "alice/carded", token=WRITE)
    r = repo(hub_server, "alice/carded")
    _, files = r.commits[-1]
    assert set(files) == {"model.safetensors", "config.json", "README.md", "loss_curve.png", "metrics.jsonl"}
    assert {"model.safetensors", "loss_curve.png"} <= r.lfs  # binary files went through the LFS upload
    assert hashlib.sha256(files["model.safetensors"]).hexdigest() in hub_server.state.blobs
    card = files["README.md"].decode()
    assert 'GPT.from_pretrained("alice/carded")' in card
    assert "--weights alice/carded" in card and "![Loss curve" in card and "## A sample" in card
    (run.parent / "card.md").write_text(card, encoding="utf-8")
    meta = metadata_load(run.parent / "card.md")
    assert meta["library_name"] == "gpt-from-scratch" and meta["license"] == "mit"
    assert meta["datasets"] == ["karpathy/tiny_shakespeare"]
    metric = meta["model-index"][0]["results"][0]["metrics"][0]
    best_val = best_eval(read_log(run))["val_loss"]
    assert metric["type"] == "loss" and metric["value"] == round(best_val, 4)
    assert f"{best_val:.4f}" in card
    assert Image.open(io.BytesIO(files["loss_curve.png"])).size == (800, 400)


def test_gpt_from_pretrained_takes_a_repo_id_and_push_to_hub_works(hub_server, run, monkeypatch):
    model = GPT.from_pretrained(run)
    model.push_to_hub("alice/mixin", token=WRITE)  # PyTorchModelHubMixin's own upload
    monkeypatch.setenv("HF_TOKEN", READ)
    loaded = GPT.from_pretrained("alice/mixin")
    assert sample(loaded) == sample(model)


def test_push_to_hub_writes_the_same_rich_card_as_the_command_line(hub_server, run, tmp_path):
    from gpt.sharing.card import INSTALL
    from gpt.sharing.hub import repo_files

    model = GPT.from_pretrained(run)  # loaded from its run folder: it knows its log
    assert model.log is not None and model.log["evals"]
    model.push_to_hub("alice/mixin-card", token=WRITE)
    _, files = repo(hub_server, "alice/mixin-card").commits[-1]
    card = files["README.md"].decode()
    assert card == repo_files(run, model, "alice/mixin-card")["README.md"].decode()  # one card, either way
    assert INSTALL in card and 'GPT.from_pretrained("alice/mixin-card")' in card and "## A sample" in card
    assert "More Information Needed" not in card
    (tmp_path / "card.md").write_text(card, encoding="utf-8")
    metric = metadata_load(tmp_path / "card.md")["model-index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "loss" and metric["value"] == round(best_eval(read_log(run))["val_loss"], 4)
    assert Image.open(io.BytesIO(files["loss_curve.png"])).size == (800, 400)  # the curve the card shows

    model.save_pretrained(tmp_path / "copy")
    saved = (tmp_path / "copy" / "README.md").read_text(encoding="utf-8")
    assert saved == repo_files(run, model, str(tmp_path / "copy"))["README.md"].decode()
    assert (tmp_path / "copy" / "loss_curve.png").is_file()


def test_from_pretrained_honours_cache_dir_force_download_and_local_files_only(hub_server, run, tmp_path,
                                                                            monkeypatch):
    from gpt import WeightsError

    push(run, "alice/cached", token=WRITE)
    monkeypatch.setenv("HF_TOKEN", READ)
    asked = len(hub_server.state.requests)
    with pytest.raises(WeightsError, match="not in the Hub cache"):
        GPT.from_pretrained("alice/cached", cache_dir=tmp_path / "cache", local_files_only=True)
    assert len(hub_server.state.requests) == asked  # it never touched the network

    model = GPT.from_pretrained("alice/cached", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").rglob("model.safetensors"))  # the download went where it was told
    asked = len(hub_server.state.requests)
    offline = GPT.from_pretrained("alice/cached", cache_dir=tmp_path / "cache", local_files_only=True)
    assert len(hub_server.state.requests) == asked and sample(offline) == sample(model)
    GPT.from_pretrained("alice/cached", cache_dir=tmp_path / "cache", force_download=True)
    fetched = [path for method, path, _ in hub_server.state.requests[asked:] if method == "GET"]
    assert any(path.endswith("/model.safetensors") for path in fetched)  # downloaded again, not from the cache


def test_a_revision_pulls_that_commit(hub_server, run, tmp_path):
    push(run, "alice/versions", token=WRITE)
    push(DEFAULT, "alice/versions", token=WRITE, message="now the default weights")
    first = repo(hub_server, "alice/versions").commits[0][0]
    old = pull("alice/versions", revision=first, root=tmp_path, name="old", token=READ)
    new = pull("alice/versions", root=tmp_path, name="new", token=READ)
    assert (old / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    assert same_weights(GPT.from_pretrained(new), GPT.from_pretrained(DEFAULT))  # (as a GPT-2: gpt.sharing.export_folder)
    card = (new / "README.md").read_text(encoding="utf-8")  # a card without a log, pointed at the repo
    assert 'from_pretrained("alice/versions")' in card and "weights/default" not in card.split("## How")[0]


def test_pull_refuses_to_replace_a_folder_unless_asked(hub_server, run, tmp_path):
    push(run, "alice/again", token=WRITE)
    pull("alice/again", root=tmp_path, token=READ)
    with pytest.raises(HubError, match="already exists"):
        pull("alice/again", root=tmp_path, token=READ)
    assert pull("alice/again", root=tmp_path, token=READ, overwrite=True) == tmp_path / "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no staging folders left behind


def test_a_pull_leaves_one_copy_under_weights_and_none_in_the_hugging_face_cache(hub_server, run, tmp_path):
    # a public server pulls for visitors: what it keeps must all be where its space for weights is bounded
    push(run, "alice/once", token=WRITE)
    pull("alice/once", root=tmp_path / "weights", token=READ)
    pull("alice/once", root=tmp_path / "weights", token=READ, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["once"]
    assert not list(Path(constants.HF_HUB_CACHE).rglob("models--alice--once"))  # where the cache would keep it


def test_a_pull_above_its_size_limit_is_refused_before_downloading(hub_server, run, tmp_path):
    push(run, "alice/sized", token=WRITE)
    size = sum(len(data) for data in repo(hub_server, "alice/sized").commits[-1][1].values())
    seen = len(hub_server.state.requests)
    with pytest.raises(HubError, match=r"alice/sized is [\d.]+ MB; the limit here is [\d.]+ MB"):
        pull("alice/sized", root=tmp_path, token=READ, max_bytes=size // 2)
    assert not (tmp_path / "sized").exists()
    assert not any("/resolve/" in path for _, path, _ in hub_server.state.requests[seen:])  # nothing downloaded
    assert pull("alice/sized", root=tmp_path, token=READ, max_bytes=size).name == "sized"


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "../etc", "alice/..", "alice/", "al ice/x", ""])
def test_malformed_repo_ids_are_refused_before_any_request(hub_server, run, repo_id):
    before = len(hub_server.state.requests)
    with pytest.raises(HubError, match="not a Hub repo id"):
        push(run, repo_id, token=WRITE)
    with pytest.raises(HubError, match="not a Hub repo id"):
        pull(repo_id, token=WRITE)
    assert len(hub_server.state.requests) == before


@pytest.mark.parametrize("name", ["../outside", "a/b", "default", ".hidden"])
def test_pull_never_writes_outside_weights(hub_server, run, tmp_path, name):
    push(run, "alice/named", token=WRITE)
    with pytest.raises(HubError, match="cannot name a weights folder"):
        pull("alice/named", root=tmp_path / "weights", name=name, token=READ)
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("token, repo_id, message", [
    (None, "alice/x", r"\(401\): the token is missing, mistyped or expired"),
    ("hf_not_a_real_token_42", "alice/x", r"\(401\): the token is missing"),
    (READ, "alice/x", r"\(403\): it needs write access"),
    (BOB, "alice/x", r"\(403\)"),
])
def test_push_errors_say_what_is_wrong_with_the_token(hub_server, run, token, repo_id, message, monkeypatch):
    from gpt.sharing import hub

    # said before the files are made: an export takes half a minute, a refusal should not
    monkeypatch.setattr(hub, "repo_files", lambda *a, **k: pytest.fail("made the files before the Hub took the token"))
    with pytest.raises(HubError, match=message) as e:
        push(run, repo_id, token=token)
    assert not token or token not in str(e.value)


def test_pull_errors_say_what_is_missing(hub_server, run, tmp_path):
    push(run, "alice/private", token=WRITE, private=True)
    with pytest.raises(HubError, match=r"No repo alice/nothing-here on the Hub \(404\)"):
        pull("alice/nothing-here", root=tmp_path, token=READ)
    with pytest.raises(HubError, match=r"\(401\).*or the repo is private"):
        pull("alice/private", root=tmp_path)
    with pytest.raises(HubError, match=r"No repo alice/private .*\(404\)"):
        pull("alice/private", root=tmp_path, token=BOB)
    with pytest.raises(HubError, match="has no revision 'v9'"):
        pull("alice/private", root=tmp_path, token=READ, revision="v9")
    assert pull("alice/private", root=tmp_path, token=READ).is_dir()  # the owner may


def _upload(repo_id, files: dict[str, bytes]):
    api = HfApi(token=WRITE)
    api.create_repo(repo_id, exist_ok=True)
    from huggingface_hub import CommitOperationAdd

    api.create_commit(repo_id, [CommitOperationAdd(k, v) for k, v in files.items()], commit_message="test")


def test_a_repo_that_is_not_one_of_our_models_is_explained(hub_server, tmp_path):
    config = (DEFAULT / "config.json").read_bytes()
    tensors = (DEFAULT / "model.safetensors").read_bytes()
    _upload("alice/bert", {"config.json": b'{"model_type": "bert", "hidden_size": 768}', "model.safetensors": tensors})
    with pytest.raises(HubError, match=r"alice/bert is not a GPT of this project: .*lacks vocab_size"):
        pull("alice/bert", root=tmp_path, token=READ)
    wider = config.replace(b'"n_embd": 192', b'"n_embd": 384')
    _upload("alice/mismatch", {"config.json": wider, "model.safetensors": tensors})
    with pytest.raises(HubError, match=r"does not match its config.json"):
        pull("alice/mismatch", root=tmp_path, token=READ)
    _upload("alice/pickled", {"config.json": config, "pytorch_model.bin": b"\x80\x04 not even a real pickle"})
    with pytest.raises(HubError, match="has no model.safetensors"):
        pull("alice/pickled", root=tmp_path, token=READ)
    assert not any("pytorch_model.bin" in path for _, path, _ in hub_server.state.requests)  # never fetched
    assert list(tmp_path.iterdir()) == []


def hub_cli(*args, env_extra=None, cwd=ROOT):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gpt.hub", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def hub_main(*args):
    """The command line's main(argv) in this process (conftest.run_main); hub_cli runs the real process, and each
    test below runs it once."""
    from gpt.sharing.hub import main

    return run_main(main, *args)


def test_the_command_line_pushes_and_pulls_and_never_shows_the_token(hub_server, run, tmp_path, monkeypatch):
    token = {"HF_TOKEN": WRITE}
    pushed = hub_cli("push", str(run), "alice/from-cli", "--message", "from the command line", env_extra=token)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip().endswith("/alice/from-cli")
    monkeypatch.setenv("HF_TOKEN", WRITE)
    pulled = hub_main("pull", "alice/from-cli", "--root", str(tmp_path))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "from-cli" / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    refused = hub_main("push", str(run), "bob/theirs")
    assert refused.returncode == 1 and "(403)" in refused.stderr and "Traceback" not in refused.stderr
    for result in (pushed, pulled, refused):
        assert WRITE not in result.stdout + result.stderr
    # nothing we wrote holds the token: the weights, the Hub cache (the subprocess's and this process's), the run
    for folder in (tmp_path, Path(os.environ["HF_HOME"]), Path(constants.HF_HOME), run):
        for path in folder.rglob("*"):
            assert not path.is_file() or WRITE.encode() not in path.read_bytes(), path


class RetryClock:
    """huggingface_hub's clock with its retry waits recorded instead of slept: the same retries, not 23 s of waiting."""

    def __init__(self):
        self.waits = []

    def sleep(self, seconds):
        self.waits.append(seconds)

    def __getattr__(self, name):
        return getattr(time, name)


def test_no_network_is_explained(run, tmp_path, monkeypatch):
    from huggingface_hub.utils import _http

    with socket.socket() as s:  # a port nobody listens on: connection refused, as when offline
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {"HF_ENDPOINT": closed, "HF_TOKEN": WRITE, "HF_HOME": str(tmp_path / "hf")}
    # the real process: a push asks the Hub once (no retries), so it tells at once
    pushed = hub_cli("push", str(run), "alice/anything", env_extra=env)
    # a pull retries five times first (1+2+4+8+8 s): waited out here on huggingface_hub's clock, recorded
    clock = RetryClock()
    monkeypatch.setattr(_http, "time", clock)
    monkeypatch.setattr(constants, "ENDPOINT", closed)  # what HF_ENDPOINT sets when huggingface_hub is imported
    monkeypatch.setenv("HF_TOKEN", WRITE)
    pulled = hub_main("pull", "alice/anything", "--root", str(tmp_path))
    assert clock.waits == [1, 2, 4, 8, 8]  # it did wait out every retry before explaining
    for result in (pushed, pulled):
        assert result.returncode == 1, result.stderr  # a runtime failure, not a usage error
        assert "Could not reach the Hub" in result.stderr and closed in result.stderr
        assert "Traceback" not in result.stderr and WRITE not in result.stderr


def test_a_published_space_starts_the_app_with_the_chosen_weights(hub_server, run, tmp_path):
    url = publish_space("alice/my-space", run, token=WRITE)
    assert url.endswith("/spaces/alice/my-space")
    assert repo(hub_server, "alice/my-space", "space").sdk == "gradio"
    space = Path(snapshot_download("alice/my-space", repo_type="space", token=READ,
                                   local_dir=tmp_path / "space"))
    files = {str(p.relative_to(space)) for p in space.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert {"app.py", "requirements.txt", "README.md", "gpt/model.py", "gpt/sharing/hub.py", "weights/default/model.safetensors",
            "weights/default/config.json", "weights/default/README.md"} <= files
    assert not any(f.startswith(("tests/", "bench/", ".venv")) for f in files)
    assert {f"webapp/{p.name}" for p in (ROOT / "webapp").glob("*.js")} | {"webapp/js/package-lock.json"} <= files
    meta = metadata_load(space / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["sdk_version"]
    from webapp.space import SPACE
    import gradio
    assert meta == SPACE == metadata_load(ROOT / "README.md")  # the project runs as the very same Space
    assert SPACE["sdk_version"] == gradio.__version__  # the Space runs the Gradio the tests ran
    assert meta["hf_oauth"] is True and "manage-repos" in meta["hf_oauth_scopes"]  # visitors sign in to push
    assert (space / "weights/default/model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    # its requirements are installable (here: already satisfied, offline: checked while the app starts), and the
    # app starts and generates
    check = subprocess.Popen([sys.executable, "-m", "pip", "install", "--no-index", "-q", "-r", "requirements.txt"],
                             cwd=space, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    from gradio_client import Client

    with serving(cwd=space, env={"GPT_WEIGHTS_DIR": None}, log=tmp_path / "space.log", timeout=90) as app:
        client = Client(app.url, analytics_enabled=False, verbose=False)
        text, _ = client.predict("default", "ROMEO:", 80, 0.8, 40, 1.0, 7, api_name="/generate")
        assert text == "ROMEO:" + sample(served(GPT.from_pretrained(run)))  # as the app generates
    said, _ = check.communicate(timeout=120)
    assert check.returncode == 0, said


def test_a_space_serving_pulled_weights_links_their_model_repo(hub_server, run, tmp_path):
    from webapp.space import space_files

    push(run, "alice/served", token=WRITE)
    pulled = pull("alice/served", root=tmp_path, token=READ)
    (tmp_path / "card.md").write_bytes(space_files(pulled, GPT.from_pretrained(pulled), "alice/space")["README.md"])
    meta = metadata_load(tmp_path / "card.md")
    assert meta["models"] == ["alice/served"] and meta["sdk"] == "gradio"
    assert "https://huggingface.co/alice/served" in (tmp_path / "card.md").read_text()
    (tmp_path / "own.md").write_bytes(space_files(run, GPT.from_pretrained(run), "alice/space")["README.md"])
    assert "models" not in metadata_load(tmp_path / "own.md")  # weights made here: no repo to link


def test_the_app_pushes_pulls_and_generates_from_what_it_pulled(hub_server, app_server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_server["url"], analytics_enabled=False, verbose=False)
    message = client.predict("default", "alice/from-app", WRITE, False, "", api_name="/push_to_hub")
    assert message.startswith("✅") and 'GPT.from_pretrained("alice/from-app")' in message
    assert WRITE not in message
    _, files = repo(hub_server, "alice/from-app").commits[-1]
    # the shipped weights, as gpt.sharing.export_folder writes them: transformers and ONNX load the repo too
    assert set(files) >= {"model.safetensors", "config.json", "tokenizer.json", "onnx/model.onnx"}

    message, selected = client.predict("alice/from-app", "", "pulled", False, READ, api_name="/pull_from_hub")
    assert message.startswith("✅") and selected["value"] == "pulled"  # and the Generate tab picks it
    assert (app_server["weights"] / "pulled" / "model.safetensors").read_bytes() == files["model.safetensors"]
    text, _ = client.predict("pulled", "ROMEO:", 80, 0.8, 40, 1.0, 7, api_name="/generate")
    assert text == "ROMEO:" + sample(served(GPT.from_pretrained(DEFAULT)))

    with pytest.raises(AppError, match=r"\(401\)") as refused:  # a script sees an exception, not a success
        client.predict("default", "alice/from-app", "hf_wrong_token_123", False, "", api_name="/push_to_hub")
    assert "hf_wrong_token_123" not in str(refused.value)
    with pytest.raises(AppError, match=r"\(404\)"):
        client.predict("alice/not-there", "", "", False, READ, api_name="/pull_from_hub")
    assert WRITE not in app_server["log"].read_text() and READ not in app_server["log"].read_text()


def test_a_run_can_start_from_a_hub_repo_and_its_card_names_the_repo(hub_server, run, tmp_path):
    """`python -m train --init-from user/repo`: the weights come from the Hub (the stand-in), training goes on."""
    push(run, "alice/base", token=WRITE)
    out = tmp_path / "tuned"
    config = TrainConfig.from_preset("tiny", max_iters=10, eval_interval=5, eval_iters=2, n_layer=6,
                                     init_from="alice/base")
    Trainer(config, out).run()
    base, tuned = GPT.from_pretrained(run), GPT.from_pretrained(out)
    assert tuned.config == base.config  # the shape came from the repo, not from the preset (6 layers asked)
    first = next(e for e in read_log(out)["evals"] if e["step"] == 0)
    assert first["val_loss"] < best_eval(read_log(run))["val_loss"] + 0.2  # it starts where the repo's model ended
    assert read_log(out)["init_from"] == "alice/base on the Hub"
    assert "Started from the weights of alice/base on the Hub" in (out / "README.md").read_text()


def test_push_and_pull_report_the_bytes_they_transfer(hub_server, tmp_path, monkeypatch):
    """Byte-level progress: the bytes counted as they are sent or written, up to the weights' size."""
    from gpt.sharing import hub

    monkeypatch.setattr(hub, "POLL_S", 0.001)  # look often: a local transfer of 11 MB takes a fraction of a second
    model = GPT.from_pretrained(DEFAULT)
    with torch.no_grad():  # weights the Hub has never seen: a file it already holds is not sent again
        model.lm_head.weight.add_(torch.randn_like(model.lm_head.weight) * 1e-3)
    model.save_pretrained(tmp_path / "new")
    for action, transfer in [("uploading", lambda say: push(tmp_path / "new", "alice/bytes", token=WRITE, progress=say)),
                             ("downloading", lambda say: pull("alice/bytes", root=tmp_path / "pulled", token=READ, progress=say))]:
        said = []
        transfer(lambda fraction, message: said.append((fraction, message)))
        counts = [(f, float(m.split(": ")[1].split(" of ")[0])) for f, m in said if m.startswith(action) and " of " in m]
        size = (tmp_path / "new" / "model.safetensors").stat().st_size / 1e6
        # an upload is counted per MB, so it is seen part-way, not only before and after; a download is written in
        # huggingface_hub's 10 MB chunks, so part-way (10.5 of 10.8 MB here) lasts a moment a poll may miss
        assert len({mb for _, mb in counts}) >= (3 if action == "uploading" else 2), said
        assert [mb for _, mb in counts] == sorted(mb for _, mb in counts)  # never backwards
        assert [f for f, _ in counts] == sorted(f for f, _ in counts)
        assert counts[-1][1] >= round(size, 1), said  # the weights at least (the card, curve and log are small)
    said = []  # the same bytes again: the Hub holds them, nothing is sent, and the message says why
    push(tmp_path / "new", "alice/bytes-again", token=WRITE, progress=lambda f, m: said.append(m))
    assert any(m.endswith("MB were already there") for m in said), said


# --- an upload to push (a run trained in a visitor's browser): checked before anything touches it ---

def uploaded(folder: Path, **replace) -> dict[str, Path]:
    """A weights folder's files as an upload names them, some replaced."""
    files = {name: folder / name for name in ("model.safetensors", "config.json", "metrics.jsonl")
             if (folder / name).is_file()}
    return {**files, **replace}


@pytest.fixture
def browser_run(tmp_path):
    """What a run trained in the browser downloads: model.safetensors (float32), config.json, metrics.jsonl."""
    from conftest import small_gpt
    from gpt.training.log import append
    from gpt.sharing.weights import save_weights

    folder = save_weights(small_gpt(), tmp_path / "browser-run")
    for event in ({"event": "start", "step": 0, "config": {}, "params": 1, "device": "WebAssembly (1 thread)"},
                  {"event": "step", "step": 1, "loss": 4.1, "lr": 1e-2, "tokens_per_sec": 900.0, "elapsed": 0.1},
                  {"event": "eval", "step": 1, "train_loss": 4.0, "val_loss": 4.05, "best_val": 4.05, "sample": "ab",
                   "elapsed": 0.2}, {"event": "done", "step": 1}):
        append(folder, event)
    return folder


def test_an_upload_is_refused_with_what_to_do_unless_it_is_exactly_our_model(browser_run, tmp_path, monkeypatch):
    import pickle

    from conftest import small_gpt
    from gpt.errors import WeightsError
    from gpt.sharing.hub import check_upload
    from gpt.sharing.weights import save_weights

    check_upload(uploaded(browser_run))  # a run's Download, as it is
    check_upload({k: v for k, v in uploaded(browser_run).items() if k != "metrics.jsonl"})  # the log is optional
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))  # nothing is ever unpickled
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load"))
    wide = save_weights(small_gpt(n_embd=48), tmp_path / "wide")
    pickled, torch_bin, noise, huge, garbage_log = (tmp_path / n for n in ("p", "bin", "noise", "huge", "log"))
    pickled.write_bytes(pickle.dumps({"token_embedding_table.weight": [0.0] * 100}))
    torch.save(small_gpt().state_dict(), torch_bin)  # a zip of pickles
    noise.write_bytes(os.urandom(20_000))
    with open(huge, "wb") as f:
        f.truncate(2_000_000_000)  # sparse: refused by its size, before a byte is read
    garbage_log.write_text('{"event": "step", "step": 1, "loss": "NaN?"}\n')
    cases = {
        "wrong shapes": (uploaded(browser_run, **{"model.safetensors": wide / "model.safetensors"}),
                         r"does not match its config.json \(token_embedding_table.weight is \(61, 48\), expected "
                         r"\(61, 32\).*upload the two files of one run"),
        "a pickle": (uploaded(browser_run, **{"model.safetensors": pickled}), "is not a safetensors file"),
        "a torch .bin": (uploaded(browser_run, **{"model.safetensors": torch_bin}), "is not a safetensors file"),
        "random bytes": (uploaded(browser_run, **{"model.safetensors": noise}), "is not a safetensors file"),
        "huge": (uploaded(browser_run, **{"model.safetensors": huge}), "the limit here is 100 MB"),
        "another name": (uploaded(browser_run, **{"run.py": noise}), r"upload model.safetensors, config.json and "
                                                                     r".*\(unexpected run.py\)"),
        "no config": ({"model.safetensors": browser_run / "model.safetensors"}, r"missing config.json"),
        "a config that is not JSON": (uploaded(browser_run, **{"config.json": noise}), "config.json is not valid JSON"),
        "a config that is not ours": (uploaded(browser_run, **{"config.json": garbage_log}), "config.json lacks"),
        "a log that is not ours": (uploaded(browser_run, **{"metrics.jsonl": garbage_log}), "metrics.jsonl, line 1"),
    }
    for case, (files, message) in cases.items():
        with pytest.raises(WeightsError, match=message):
            check_upload(files)
    # the shapes agree but the bytes do not: one byte more, or the file cut short
    longer = tmp_path / "longer"
    longer.write_bytes((browser_run / "model.safetensors").read_bytes() + b"\0")
    with pytest.raises(WeightsError, match="truncated or has bytes added"):
        check_upload(uploaded(browser_run, **{"model.safetensors": longer}))
