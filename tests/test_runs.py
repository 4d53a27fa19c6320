"""Runs: listing what was trained (gpt.training.runs), starting from someone's weights (--init-from), the terminal list."""

import json
import os
import shutil
import threading

import pytest
import torch
from safetensors.torch import load_file

from gpt.training import runs
from gpt.sharing import weights
from gpt.sharing.card import model_card, params_text
from gpt.training.log import read_log
from gpt.errors import ConfigError
from gpt.training.trainer import TrainConfig, Trainer
from conftest import ROOT, run_main
from train.__main__ import main as train_main


def tiny(text, **overrides) -> TrainConfig:
    return TrainConfig.from_preset("tiny", **{"data": str(text), "max_iters": 30, "eval_interval": 10,
                                              "sample_length": 20, **overrides})


def stop_at(step, stop):
    return lambda e: stop.set() if e["event"] == "step" and e["step"] == step else None


@pytest.fixture(scope="module")
def text(tmp_path_factory, shakespeare):
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text(shakespeare[:60_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, text):
    """weights/ with a finished run, a stopped one and one cut off mid-run by a crash (its log has no end)."""
    root = tmp_path_factory.mktemp("runs") / "weights"
    Trainer(tiny(text), root / "finished").run()
    stop = threading.Event()
    Trainer(tiny(text, n_layer=3, dropout=0.1), root / "stopped", stop=stop, callbacks=[stop_at(14, stop)]).run()

    def crash(event):
        if event["event"] == "step" and event["step"] == 13:
            raise RuntimeError("the server went down")

    with pytest.raises(RuntimeError):
        Trainer(tiny(text), root / "cut", callbacks=[crash]).run()
    old = os.path.getmtime(root / "cut" / "metrics.jsonl") - 3600  # long ago: not a run still going
    for f in (root / "cut").iterdir():
        os.utime(f, (old, old))
    return root


def test_runs_are_listed_with_their_state_progress_best_val_and_what_differs(three_runs):
    listed = {r["name"]: r for r in runs.list_runs(three_runs)}
    assert {n: r["state"] for n, r in listed.items()} == {"finished": "finished", "stopped": "stopped",
                                                          "cut": "interrupted"}
    assert listed["finished"]["steps"] == 30 and listed["stopped"]["steps"] == 14 and listed["cut"]["steps"] == 10
    for name, run in listed.items():
        evals = [e for e in map(json.loads, (three_runs / name / "metrics.jsonl").read_text().splitlines())
                 if e["event"] == "eval"]
        assert run["best_val"] == min(e["val_loss"] for e in evals)
        assert run["curve"][-1][0] == evals[-1]["step"] and run["sample"] == evals[-1]["sample"]
        assert run["resumable"] and run["time"] > 0 and run["params"] > 0 and run["device"]
    assert listed["stopped"]["preset"] == "tiny"
    assert listed["stopped"]["differs"] == {"n_layer": 3, "dropout": 0.1, "max_iters": 30, "eval_interval": 10,
                                            "sample_length": 20, "data": "small.txt"}
    by_val = runs.list_runs(three_runs, sort="best val")
    assert [r["best_val"] for r in by_val] == sorted(r["best_val"] for r in by_val)
    assert runs.differing_settings([listed["finished"], listed["stopped"]]) == {"n_layer": [2, 3],
                                                                               "dropout": [0.0, 0.1]}


def test_a_copied_run_keeps_its_date_and_the_shipped_weights_are_finished(three_runs, tmp_path):
    """A copy (or a fresh clone) gives files new dates: when a run started comes from its log, and a log that
    ended is never taken for a run still training."""
    root = tmp_path / "weights"
    for folder in (three_runs / "finished", ROOT / "weights" / "default"):  # files dated now, as on a fresh clone
        shutil.copytree(folder, root / folder.name, copy_function=shutil.copy)
    listed = {r["name"]: r for r in runs.list_runs(root)}
    original = next(r for r in runs.list_runs(three_runs) if r["name"] == "finished")
    assert listed["finished"]["started"] == original["started"] < (root / "finished" / "config.json").stat().st_mtime
    assert listed["default"]["state"] == "finished" and round(listed["default"]["best_val"], 4) == 1.4655


def test_ladder_rungs_are_grouped_after_the_runs(three_runs, text):
    from gpt.ladder import rungs as ladder

    rung = ladder.RUNGS[0]
    Trainer(ladder.train_config(rung, max_iters=10, eval_interval=5, data=str(text)),
            three_runs / "ladder" / "rung-1", model_factory=lambda c, v: ladder.build(1, c, v)).run()
    listed = runs.list_runs(three_runs, sort="best val")
    assert listed[-1]["name"] == "ladder/rung-1" and listed[-1]["group"] == "ladder"
    assert listed[-1]["state"] == "finished" and listed[-1]["best_val"] is not None
    bigram = listed[-1]["params"]  # vocab_size x vocab_size: a few thousand, shown as such, not as "0.00M"
    assert bigram < 10_000 and f"{bigram / 1e3:.1f}K" in runs.runs_table(listed)
    assert [params_text(n) for n in (512, 4_225, 30_145, 10_788_929)] == ["512", "4.2K", "30.1K", "10.79M"]


def test_a_run_is_deleted_but_never_the_default(three_runs, tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(three_runs / "finished", root / "mine")
    shutil.copytree(three_runs / "finished", root / "default")
    runs.delete_run(root, "mine")
    assert not (root / "mine").exists() and [r["name"] for r in runs.list_runs(root)] == ["default"]
    for name, message in [("default", "cannot be deleted"), ("nothing", "no run named"), ("../x", "run name")]:
        with pytest.raises(ConfigError, match=message):
            runs.delete_run(root, name)
    assert (root / "default" / "model.safetensors").exists()


def test_fine_tuning_starts_from_the_weights_and_its_card_says_so(three_runs, text, tmp_path):
    source = three_runs / "finished"
    # the shape asked for is ignored: the model is the weights' (2 layers), the dropout is ours
    config = tiny(text, max_iters=0, n_layer=4, dropout=0.1, init_from=str(source))
    trainer = Trainer(config, tmp_path / "tuned")
    assert trainer.config.n_layer == 2 and trainer.config.dropout == 0.1
    trainer.run()
    start = load_file(str(tmp_path / "tuned" / "model.safetensors"))  # saved at the step-0 evaluation
    for name, tensor in load_file(str(source / "model.safetensors")).items():
        assert torch.equal(start[name], tensor), name
    card = (tmp_path / "tuned" / "README.md").read_text()
    assert "Started from the weights of weights/finished (fine-tuned)" in card

    Trainer(tiny(text, max_iters=20, init_from=str(source)), tmp_path / "tuned2").run()
    assert runs.list_runs(tmp_path)[0]["init_from"] == "weights/finished"


def test_fine_tuning_names_the_characters_the_weights_cannot_represent(three_runs, tmp_path, text):
    accents = tmp_path / "accents.txt"
    accents.write_text(text.read_text() + "Café, señor — naïve?\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        Trainer(tiny(accents, init_from=str(three_runs / "finished")), tmp_path / "x")
    for c in "éñ—ï":
        assert f"'{c}' (U+{ord(c):04X})" in str(e.value)
    assert "cannot represent" in str(e.value)


def test_a_pulled_repo_is_named_by_its_hub_id(three_runs):
    pulled = three_runs / "theirs"
    pulled.mkdir()
    folder = three_runs / "finished"
    for f in ("model.safetensors", "config.json"):
        (pulled / f).write_bytes((folder / f).read_bytes())
    config, vocab = weights.read_config(folder)
    (pulled / "README.md").write_text(model_card(config, vocab, read_log(folder), "alice/shakespeare"))  # as pushed
    assert weights.describe_source(pulled) == "weights/theirs, pulled from alice/shakespeare on the Hub"
    assert weights.describe_source(folder) == "weights/finished"
    assert weights.describe_source("alice/shakespeare") == "alice/shakespeare on the Hub"


def test_the_command_line_lists_runs_and_fine_tunes(three_runs, tmp_path, text):
    cli = lambda *args: run_main(train_main, *args)  # noqa: E731  in-process; tests/test_cli.py runs the real command
    listed = cli("--list", "--out", str(three_runs), "--sort", "best val")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert "best val" in lines[0] and {"finished", "stopped", "cut"} <= set(rows)
    assert rows["stopped"][1] == "stopped" and rows["cut"][1] == "interrupted" and rows["cut"][2] == "10"
    vals = [line[50:60].strip() for line in lines[1:] if not line.startswith("ladder/")]  # the best val column
    vals = [float(v) for v in vals if v != "-"]
    assert len(vals) >= 3 and vals == sorted(vals)  # lowest best val first

    out = three_runs / "tuned"
    tuned = cli("--preset", "tiny", "--init-from", str(three_runs / "finished"), "--data", str(text),
                "--max-iters", "10", "--eval-interval", "5", "--out", str(out))
    assert tuned.returncode == 0, tuned.stderr
    assert "Started from the weights of weights/finished" in (out / "README.md").read_text()
    refused = cli("--preset", "tiny", "--init-from", str(three_runs / "finished"), "--n-embd", "64",
                  "--out", str(tmp_path / "no"))
    assert refused.returncode == 2 and "shape comes from the weights" in refused.stderr


def test_the_ladder_tab_shows_rungs_climbed_before_a_restart(three_runs, text, monkeypatch):
    """After a restart the runner has no ladder, but the rungs on disk are the ladder's results: show them."""
    from gpt.ladder import rungs as ladder
    from webapp import ladder as ladder_tab
    from webapp import state

    Trainer(ladder.train_config(ladder.RUNGS[0], max_iters=10, eval_interval=5, data=str(text)),
            three_runs / "ladder" / "rung-1", model_factory=lambda c, v: ladder.build(1, c, v)).run()
    monkeypatch.setattr(ladder_tab, "WEIGHTS", three_runs)
    monkeypatch.setattr(state, "WEIGHTS", three_runs)
    rows = ladder_tab.climbed({"ladder": []})["ladder"]
    assert [(r["rung"], r["state"], [s for s, _ in r["curve"]]) for r in rows] == [(1, "done", [0, 5, 10])]
    assert ladder_tab.ladder_table({"ladder": rows})["our val"].iloc[0] == round(rows[0]["val"], 3)
    assert "ladder/rung-1" in state.weights_choices()  # a rung can be chosen to generate and for attention maps


def test_a_page_s_replay_clock_is_only_a_past_time(tmp_path, monkeypatch):
    """A tab keeps when its replay of the shipped weights began in a hidden field of the page (not a gr.State, whose
    heartbeat held a connection in every tab), so a stranger's page can send anything there: whatever is not a past
    time starts the replay now, and a time long past shows its end, still."""
    import time

    from webapp import state
    from webapp import train as train_tab

    (tmp_path / "weights").mkdir()
    shutil.copytree(state.WEIGHTS / "default", tmp_path / "weights" / "default")  # the shipped weights alone
    monkeypatch.setattr(train_tab, "WEIGHTS", tmp_path / "weights")
    before = time.time()
    for sent in (None, float("nan"), float("inf"), before + 3600):
        began = train_tab.poll(False, sent, None, None)[7]
        assert before <= began <= time.time(), sent
    assert train_tab.poll(False, before - 5, None, None)[7] == before - 5  # the page's own clock goes on
    end = train_tab.poll(False, -1e300, None, None)
    assert end[7] == -1e300 and not end[8].active  # the replay over: nothing moves, no poll


def test_a_past_run_is_shown_from_its_log_and_replays_noise_to_shakespeare(tmp_path, text):
    """With no live run the Train tab shows a log: whole for the last run, step by step for the shipped weights."""
    from gpt.training.log import RunRecord
    from webapp.train import REPLAY_S, logged, logged_status, progress_html, replay

    live = RunRecord(name="past", folder=tmp_path / "past")  # as the runner keeps it, fed the events as they come
    Trainer(TrainConfig.from_preset("tiny", data=str(text), max_iters=30, eval_interval=10, eval_iters=2),
            tmp_path / "past", callbacks=[live.add]).run()
    past = logged_status(tmp_path / "past", "past")
    assert past["state"] == "finished" and [e["step"] for e in past["evals"]] == [0, 10, 20, 30]
    assert {**live.status(), "state": "finished"} == past  # one record: the same whether watched live or read back
    assert "Finished <b>past</b>" in progress_html(past)
    run = logged(tmp_path / "past", "past")
    start, middle, end = (replay(run, t) for t in (0.0, REPLAY_S / 2, REPLAY_S * 10))
    assert [e["step"] for e in start["evals"]] == [0] and start["state"] == "replay"
    assert [e["step"] for e in middle["evals"]] == [0, 10] and middle["step"] == 15
    assert end["evals"] == past["evals"] and end["step"] == 30  # played once, then held whole
    assert "Replay" in progress_html(middle, may_train=False) and "python app.py" in progress_html(middle, False)


def test_a_long_run_s_status_sends_a_thinned_share_of_its_batches():
    """Every viewer's poll carries the chart's steps: a long run's are thinned where the status is made, once."""
    from gpt.training.log import MAX_STEP_POINTS, RunRecord

    run = RunRecord(name="long")
    for i in range(1, 4001):
        run.add({"event": "step", "step": i, "loss": 4.0 - i / 1000})
    steps = run.status()["steps"]
    assert MAX_STEP_POINTS <= len(steps) < 2 * MAX_STEP_POINTS and steps[0] == (1, 3.999)
    assert all(loss == 4.0 - step / 1000 for step, loss in steps)  # the batches' own losses, not averages
    short = RunRecord(name="short")
    for i in range(1, 301):
        short.add({"event": "step", "step": i, "loss": 1.0})
    assert len(short.status()["steps"]) == 300  # a short run: every batch
