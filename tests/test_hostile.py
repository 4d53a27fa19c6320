"""Hostile and clumsy input (issue 17): the app and the command lines answer with a message and stay up.

App items go through the running app (`python app.py`): gradio_client, or raw HTTP where gradio_client would
not send the payload. Command-line items run the command lines in a subprocess, or, for a refusal, their main(argv)
in this process (test_cli runs each command line's real process for its exit statuses). A full disk is a real one: a
tiny tmpfs mounted in a private mount namespace (`unshare -m`, needs root), so nothing outside the test sees it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import expect

import serve
from conftest import ROOT, run_main
from test_app import TINY, client, generate, start, wait_for  # noqa: F401,F811 (client: the fixture)

DEFAULT = ROOT / "weights" / "default"


def answer(call) -> str:
    """What a refused call says, whether it returns a message or raises one (gr.Error)."""
    try:
        return str(call())
    except Exception as e:
        return str(e)


def raw_call(url: str, api: str, body: str) -> str:
    """POST a JSON body (written by hand: NaN, Infinity and server paths are allowed) and read the answer."""
    request = urllib.request.Request(f"{url}gradio_api/call/{api}", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
    return urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event}", timeout=120).read().decode()


def error_of(stream: str) -> str | None:
    """The message of an 'event: error' answer, None if the call completed."""
    lines = stream.splitlines()
    for i, line in enumerate(lines):
        if line == "event: error":
            return json.loads(lines[i + 1].removeprefix("data: "))["error"]
    return None


def huge_weights(folder: Path, **config) -> Path:
    """A copy of the default weights whose config.json asks for an enormous model."""
    folder.mkdir(parents=True)
    shutil.copy(DEFAULT / "model.safetensors", folder)
    raw = json.loads((DEFAULT / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**raw, **config}), encoding="utf-8")
    return folder


def in_namespace(script: str) -> list[str]:
    """A shell script run in a private mount namespace, where it may mount a tiny tmpfs that only it sees."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-ec", script]


needs_mounts = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                  reason="a real full disk needs root to mount a tmpfs in a private namespace")

# --- 1. files off the server ---


def test_a_server_file_that_was_never_uploaded_is_refused(client, app_server, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET notes of the server\n" * 200, encoding="utf-8")
    args = [*list(TINY.values())[:11], "My own text", {"path": str(secret), "meta": {"_type": "gradio.FileData"}},
            "stolen", 0, "", "muon", 0.035]
    error = error_of(raw_call(app_server["url"], "start_training", json.dumps({"data": args})))
    assert error and "not uploaded" in error
    assert client.predict(api_name="/training_status")["state"] != "running"
    assert not (app_server["weights"] / "stolen").exists()
    # the push of a browser's run: the server's own weights, named by path, are not an upload either
    server_files = [{"path": str(app_server["weights"] / "default" / name), "meta": {"_type": "gradio.FileData"}}
                    for name in ("model.safetensors", "config.json")]
    error = error_of(raw_call(app_server["url"], "push_browser_run", json.dumps({"data": [server_files, "me/x",
                                                                                          False, ""]})))
    assert error and "not uploaded" in error


def test_a_mounted_app_refuses_server_files_too(tmp_path):
    """Served with gr.mount_gradio_app, Gradio skips its own check and copies the file in: ours still holds."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET notes of the server\n" * 200, encoding="utf-8")
    mounted = ("import os, fastapi, gradio as gr, uvicorn; from app import demo; "
               "uvicorn.run(gr.mount_gradio_app(fastapi.FastAPI(), demo.queue(), path='/'), host='127.0.0.1', "
               "port=int(os.environ['PORT']))")
    app = serve.start([sys.executable, "-c", mounted], weights=tmp_path / "weights", log=tmp_path / "mounted.log")
    url = app.url
    try:
        args = [*list(TINY.values())[:11], "My own text",
                {"path": str(secret), "meta": {"_type": "gradio.FileData"}}, "stolen", 0, "", "muon", 0.035]
        stream = raw_call(url, "start_training", json.dumps({"data": args}))
        assert "not uploaded to this app" in stream and "Started" not in stream
        assert str(secret) not in stream  # no server path echoed back
        status = Client(url, verbose=False).predict(api_name="/training_status")
        assert status["state"] == "idle"
        assert not (tmp_path / "weights" / "stolen").exists()
    finally:
        app.stop(signal.SIGKILL)  # uvicorn run by hand waits ~15 s on SIGTERM (python app.py stops at once)


# --- 2. configs that would allocate before anyone refuses them ---


@pytest.mark.parametrize("config", [dict(n_embd=10_000_002), dict(n_layer=1_000_000)])
def test_enormous_weights_configs_are_refused_before_anything_is_built(client, app_server, config, tmp_path):
    name = f"huge-{next(iter(config))}"
    huge_weights(tmp_path / name, **config)
    os.symlink(tmp_path / name, app_server["weights"] / name)  # as if pulled or copied into weights/
    for call in (lambda: generate(client, name), lambda: client.predict(name, "ROMEO:", api_name="/attention")):
        with pytest.raises(Exception, match=r"parameters, which would need about [\d.]+ GB to load.*too big"):
            call()
    assert len(generate(client, "default")[0]) == 66  # the server is up and well
    from gpt.generate import main

    cli = run_main(main, "--weights", str(app_server["weights"] / name), "--max-new-tokens", "5")
    assert cli.returncode == 1 and "too big for this machine" in cli.stderr and "Traceback" not in cli.stderr
    (app_server["weights"] / name).unlink()


def test_pulling_an_enormous_config_is_refused(hub_server, client, app_server):
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token="hf_alice_write_0123456789")
    api.create_repo("alice/huge", exist_ok=True)
    raw = json.loads((DEFAULT / "config.json").read_text(encoding="utf-8"))
    api.create_commit("alice/huge", [CommitOperationAdd("config.json", json.dumps({**raw, "n_layer": 10**6}).encode()),
                                     CommitOperationAdd("model.safetensors", str(DEFAULT / "model.safetensors"))],
                      commit_message="huge")
    said = answer(lambda: client.predict("alice/huge", "", "huge", False, "", api_name="/pull_from_hub"))
    assert "too big for this machine" in said
    assert not (app_server["weights"] / "huge").exists()


# --- 3. seeds torch cannot take ---


def test_a_seed_outside_64_bits_gets_a_message(client):
    from gpt.generate import main as generate_main
    from train.__main__ import main as train_main

    with pytest.raises(Exception, match=r"seed must be a whole number from 0 to 18446744073709551615"):
        generate(client, "default", seed=10**30)
    assert "seed must be a whole number from 0 to" in answer(lambda: start(client, seed=10**30))
    assert client.predict(api_name="/training_status")["state"] != "running"
    for main, args in ((train_main, ["--preset", "tiny", "--seed", str(10**30), "--out", "/nonexistent/x"]),
                       (generate_main, ["--seed", "-1", "--max-new-tokens", "5"])):
        cli = run_main(main, *args)
        assert cli.returncode == 2 and "seed must be a whole number from 0 to" in cli.stderr, cli.stderr


# --- 4. Gradio's own input checks carry a message ---


@pytest.mark.parametrize("api,data,names", [
    ("start_training", '["tiny", NaN, 2, 32, 32, 16, 0.003, 50, 0.0, 20, 1, "Tiny Shakespeare", null, "", 0, "", "muon", 0.035]', "nan"),
    ("start_training", '["tiny", Infinity, 2, 32, 32, 16, 0.003, 50, 0.0, 20, 1, "Tiny Shakespeare", null, "", 0, "", "muon", 0.035]',
     "inf"),
    ("start_training", '["tiny", "six", 2, 32, 32, 16, 0.003, 50, 0.0, 20, 1, "Tiny Shakespeare", null, "", 0, "", "muon", 0.035]',
     "six"),
    ("start_training", '["tiny", 2]', "needed: 18, got: 2"),
    ("generate", '["default", "ROMEO:", 10, 0.8, 40, 1.0, NaN]', "nan"),
    ("generate", '["default", "ROMEO:", 10, NaN, 40, 1.0, 1]', "temperature"),
    ("start_ladder", '[["1"], "abc"]', "abc"),
])
def test_refused_calls_say_why(app_server, client, api, data, names):
    error = error_of(raw_call(app_server["url"], api, '{"data": %s}' % data))
    assert error and names in error  # not "(null error)", not "verbose error reporting"
    assert client.predict(api_name="/training_status")["state"] != "running"


def test_nan_in_a_float_setting_is_explained(client):
    # gradio_client itself refuses to send NaN (it is not JSON); a browser's or script's raw call can
    body = json.dumps({"data": [*list(TINY.values())[:6], 0.0, 50, 0.0, 20, 1, "Tiny Shakespeare", None, "", 0, "", "muon", 0.035]})
    body = body.replace("0.0, 50", "NaN, 50")
    stream = raw_call(client.src, "start_training", body)
    assert "learning_rate must be a number of 0 or more, not nan" in stream


# --- 5. the ladder's API page tells the truth ---


def test_the_ladder_takes_the_rungs_its_api_page_documents(client):
    documented = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/start_ladder"]
    choices = documented["parameters"][0]["type"]["items"]["enum"]
    assert choices == [str(n) for n in range(1, 15)]  # the lecture's rungs 1-7 and the second flight, 8-14
    assert client.predict(["1"], 5, api_name="/start_ladder").startswith("Climbing rung 1 on")
    wait_for(client, lambda s: s["state"] == "finished")


# --- 6. uploads ---


def test_uploads_that_are_not_texts_are_explained_by_their_name(client, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    zeros = tmp_path / "zeros.txt"
    zeros.write_bytes(b"\0" * 5000)
    ab = tmp_path / "ab.txt"
    ab.write_text("abab" * 5000, encoding="utf-8")
    for path, message in [(empty, "empty.txt is empty"), (zeros, "has only 1 distinct character"),
                          (ab, "ab.txt has only 2 distinct characters")]:
        said = answer(lambda: start(client, text_source="My own text", text_file=handle_file(path)))
        assert message in said and "/tmp" not in said and "gradio" not in said
    assert client.predict(api_name="/training_status")["state"] != "running"


def test_the_status_names_an_uploaded_text_not_its_server_path(client, tmp_path, shakespeare):
    mine = tmp_path / "mine.txt"
    mine.write_text(shakespeare[:20_000], encoding="utf-8")
    assert "Started" in start(client, text_source="My own text", text_file=handle_file(mine), run_name="named")
    status = wait_for(client, lambda s: s["config"] and s["run"] == "named")
    assert status["config"]["data"] == "mine.txt"


# --- 7. a torn metrics line; 9. temporary files left by a kill ---


def test_resume_after_a_torn_metrics_line_and_a_killed_save(tmp_path, small_text):
    from gpt.training.trainer import TrainConfig, Trainer

    out = tmp_path / "run"  # a run of 20 steps, made by the trainer here (the command line resumes it below)
    Trainer(TrainConfig.from_preset("tiny", data=str(small_text), max_iters=20, eval_interval=10), out).run()
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"event": "step", "step": 21, "lo')  # a kill in the middle of an append
    (out / ".model.safetensors.k1ll3d.tmp").write_bytes(b"half a file")  # a kill in the middle of a save
    from train.__main__ import main

    resumed = run_main(main, "--out", str(out), "--resume", "--max-iters", "30")
    assert resumed.returncode == 0, resumed.stderr
    assert "finished at step 30" in resumed.stdout
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [0, 10, 20, 30]
    assert not list(out.glob(".*.tmp"))


# --- 8. a full disk ---


@needs_mounts
def test_a_full_disk_ends_training_with_one_line_and_keeps_the_earlier_weights(tmp_path, small_text):
    full, disk, copy = tmp_path / "full", tmp_path / "disk", tmp_path / "copy"
    full.mkdir()
    disk.mkdir()
    train = (f"{sys.executable} -m train --preset tiny --data {small_text} --eval-interval 10 --eval-iters 10 "
             f"--sample-length 0 --max-iters 20 --out")
    # 1: no room for the first save; 2: room for one set of files but not for the next save beside it (1 and 2 side
    # by side, each on its own tmpfs); 3: space freed, the run resumes (and the copy of 2's files generates)
    script = f"""
        mount -t tmpfs -o size=64k none {full}
        mount -t tmpfs -o size=600k none {disk}
        set +e
        ({train} {full}/run 2> {tmp_path}/first.err; echo $? > {tmp_path}/first.rc) &
        {train} {disk}/run 2> {tmp_path}/second.err; echo $? > {tmp_path}/second.rc
        wait
        cp -r {disk}/run {copy}
        mount -o remount,size=4m {disk}
        ({sys.executable} -m gpt.generate --weights {copy} --max-new-tokens 20 > {tmp_path}/copy.out 2>&1
         echo $? > {tmp_path}/copy.rc) &
        {sys.executable} -m train --out {disk}/run --resume --max-iters 30 > {tmp_path}/resumed.out 2>&1
        echo $? > {tmp_path}/resumed.rc
        wait
    """
    subprocess.run(in_namespace(script), cwd=ROOT, check=True, timeout=300)
    first = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1" and "Traceback" not in first  # a failure
    assert "error: could not save model.safetensors in" in first and "no space left on device" in first
    assert "nothing had been saved there yet" in first
    second = (tmp_path / "second.err").read_text()
    assert (tmp_path / "second.rc").read_text().strip() == "1" and "Traceback" not in second
    assert "no space left on device" in second and "intact" in second
    assert (tmp_path / "copy.rc").read_text().strip() == "0", (tmp_path / "copy.out").read_text()  # intact
    assert not list(copy.glob(".*.tmp"))
    assert (tmp_path / "resumed.rc").read_text().strip() == "0", (tmp_path / "resumed.out").read_text()


@needs_mounts
def test_the_train_tab_says_why_a_run_could_not_save(tmp_path):
    weights = tmp_path / "weights"
    (weights / "full").mkdir(parents=True)
    script = f"mount -t tmpfs -o size=64k none {weights}/full; exec {sys.executable} app.py --port $PORT"
    with serve.serving(in_namespace(script), weights=weights, log=tmp_path / "app.log") as app:
        client = Client(app.url, verbose=False)
        assert "Started" in start(client, run_name="full")
        status = wait_for(client, lambda s: s["state"] == "failed")
        assert "could not save model.safetensors" in status["error"] and "no space left on device" in status["error"]
        assert "Traceback" not in status["error"]
        assert Client(app.url, verbose=False).predict(api_name="/training_status")["state"] == "failed"  # still up


# --- 9. names Windows reserves; a run interrupted by a restart ---


def test_names_windows_reserves_are_refused(client, tmp_path):
    from gpt.sharing.hub import main

    for name in ("CON", "nul", "com1", "LPT9.txt", "run."):
        assert "cannot name a folder on Windows" in answer(lambda: start(client, run_name=name)), name
    pulled = run_main(main, "pull", "alice/anything", "--name", "AUX", "--root", str(tmp_path))
    assert pulled.returncode == 1 and "Windows" in pulled.stderr  # (a traceback would have failed the test here)


@pytest.mark.browser
def test_after_a_restart_the_train_tab_tells_of_the_interrupted_run(tmp_path, chromium):
    """And a page open through it says it lost the server, then catches up when it is back (webapp/live.js)."""
    weights = tmp_path / "weights"
    app = ["sh", "-c", f"exec {sys.executable} app.py --port $PORT"]
    first = serve.start(app, weights=weights, log=tmp_path / "a.log")
    url = first.url
    client = Client(url, verbose=False)
    assert "Started" in start(client, run_name="cut-short")
    page = chromium.new_page()
    page.goto(url, wait_until="load")
    expect(page.locator(".status")).to_contain_text("Training cut-short", timeout=30_000)
    wait_for(client, lambda s: len(s["evals"]) >= 2)
    first.stop(signal.SIGKILL)  # the server dies in the middle of the run
    expect(page.locator("#gpt-lost")).to_contain_text("Lost the server", timeout=15_000)
    torn = weights / "cut-short" / ".model.safetensors.k1ll3d.tmp"
    torn.write_bytes(b"half a file")
    os.utime(torn, (time.time() - 3600, time.time() - 3600))  # left by the kill an hour ago

    with serve.serving(app, weights=weights, log=tmp_path / "b.log", port=first.port):
        expect(page.locator("#gpt-lost")).to_be_hidden(timeout=30_000)  # back, without a reload
        expect(page.locator("#train-progress")).to_contain_text("was interrupted at step", timeout=15_000)
        page.close()
        client = Client(url, verbose=False)
        status = client.predict(api_name="/training_status")
        assert status["state"] == "idle"
        assert status["interrupted"]["run"] == "cut-short" and status["interrupted"]["step"] >= 20
        # the hour-old torn save is gone; one the kill left a moment ago may stay (it could be a command line saving
        # now) until the run is carried on
        assert not torn.exists()
        text, _ = generate(client, "cut-short")  # its best weights are there to generate with
        assert text.startswith("ROMEO:")


def test_a_crowd_watching_a_live_run_asks_gradio_a_few_times_a_second_in_all(monkeypatch):
    """Issue 39: a poll through Gradio's queue costs the server CPU that a live run shares. A page redraws a live
    run's chart every CHART_S; in a crowd each page waits longer, so that all of them together ask about
    CROWD_POLLS_S times a second (the progress line still comes to every page each second, from /live)."""
    from webapp import live
    from webapp.train import CHART_S

    monkeypatch.setattr(live, "_listeners", 1)
    assert live.every(CHART_S) == CHART_S
    for pages in (5, 20, 200):
        monkeypatch.setattr(live, "_listeners", pages)
        assert pages / live.every(CHART_S) <= max(live.CROWD_POLLS_S, pages / CHART_S)
    assert live.every(CHART_S) == 200 / live.CROWD_POLLS_S
