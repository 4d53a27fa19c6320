"""The command lines, run as a user runs them: in a subprocess, from the repository root. Where a test asks many
things of a command line, the real process answers one of them (its exit status as the shell sees it) and its
main(argv), the very function `python -m ...` calls, the rest in this process (conftest.run_main)."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import run_main
from gpt import GPT

ROOT = Path(__file__).resolve().parent.parent


def run(*args, timeout=240, **env_overrides):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_overrides}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def evals(folder):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "eval"]


def test_train_save_resume_generate_end_to_end(tmp_path, small_text):
    from train.__main__ import main

    out = tmp_path / "my-run"
    first = run("-m", "train", "--preset", "tiny", "--data", str(small_text), "--out", str(out), "--max-iters", "60",
                "--eval-interval", "20")
    assert first.returncode == 0, first.stderr
    assert "finished at step 60" in first.stdout and "60/60" in first.stderr  # tqdm draws on stderr
    losses = [e["val_loss"] for e in evals(out)]
    assert losses[-1] < losses[0] - 0.8  # it learned

    again = run_main(main, "--preset", "tiny", "--data", str(small_text), "--out", str(out))
    assert again.returncode == 2 and "already holds a run" in again.stderr  # (a traceback fails the test here)

    resumed = run_main(main, "--out", str(out), "--resume", "--max-iters", "80")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 60" in resumed.stdout and "finished at step 80" in resumed.stdout
    assert [e["step"] for e in evals(out)] == [0, 20, 40, 60, 80]

    args = ["-m", "gpt.generate", "--weights", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "80",
            "--temperature", "0.8", "--top-k", "40", "--seed", "1"]
    from gpt.generate import main as generate_main

    a, b = run(*args), run_main(generate_main, *args[2:])  # the second in this process: the same text
    assert a.returncode == 0, a.stderr
    assert a.stdout.startswith("ROMEO:") and len(a.stdout) == len("ROMEO:") + 80 + 1
    assert a.stdout == b.stdout  # same seed, same text
    loaded = GPT.from_pretrained(out)
    assert loaded.vocab == sorted(set(small_text.read_text()))


def test_generate_reads_the_prompt_from_standard_input_with_a_dash():
    args = [sys.executable, "-m", "gpt.generate", "--prompt", "-", "--max-new-tokens", "30", "--seed", "3"]
    piped = subprocess.run(args, cwd=ROOT, input="JULIET:\nO Romeo", capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("JULIET:\nO Romeo") and len(piped.stdout) == len("JULIET:\nO Romeo") + 30 + 1
    from gpt.generate import main

    typed = run_main(main, "--prompt", "JULIET:\nO Romeo", "--max-new-tokens", "30", "--seed", "3")
    assert piped.stdout == typed.stdout  # the same prompt, however it arrives


def test_generate_streams_before_it_is_done(tmp_path, small_text):
    from gpt.training.trainer import TrainConfig, Trainer

    out = tmp_path / "run"  # weights to generate from (trained here: the command line's training has its own tests)
    Trainer(TrainConfig.from_preset("tiny", data=str(small_text), max_iters=5), out).run()
    proc = subprocess.Popen([sys.executable, "-m", "gpt.generate", "--weights", str(out), "--max-new-tokens",
                             "100000", "--seed", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.read(20)  # arrives long before 100,000 characters could be finished
        assert len(first) == 20 and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_user_mistakes_get_a_message_not_a_traceback_and_exit_2_for_usage_1_for_failures(tmp_path, small_text,
                                                                                          monkeypatch):
    from gpt.generate import main as generate_main
    from train.__main__ import main as train_main

    checks = [  # 2: the command was asked for something impossible; 1: it could not do what was asked
        (["-m", "train", "--preset", "tiny", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "a")],
         "no text file", 1),
        (["-m", "train", "--preset", "tiny", "--n-embd", "100", "--n-head", "6"], "must be divisible by n_head", 2),
        (["-m", "train", "--preset", "tiny", "--no-such-flag"], "unrecognized arguments", 2),
        (["-m", "train", "--out", str(tmp_path / "b"), "--resume"], "no run to resume", 1),
        (["-m", "train", "--preset", "tiny", "--device", "cuda:7"], "CUDA", 1),
        (["-m", "train", "--preset", "tiny", "--max-time", "soon"], "not a duration", 2),
        (["-m", "train", "--preset", "tiny", "--optimizer", "sgd"], "optimizer must be adamw, muon or auto", 2),
        (["-m", "gpt.generate", "--weights", str(tmp_path)], "no config.json", 1),
        (["-m", "gpt.generate", "--weights", str(tmp_path / "x" / "y")], "not a Hub repo id", 1),
        (["-m", "gpt.generate", "--temperature", "-1"], "temperature", 2),
        (["-m", "gpt.generate", "--prompt", "café"], "does not know", 2),
    ]
    # each entry point's real process, for one failure and one usage error: the status main returns is the exit
    # status the shell sees, and the message reaches stderr with no traceback
    real = [checks[3], checks[9]]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda check: run(*check[0], OMP_NUM_THREADS="1"), real))
    for (args, message, status), result in zip(real, results):
        assert result.returncode == status, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    # the whole table through the same main(argv) those processes run (a traceback would fail the test here)
    monkeypatch.chdir(tmp_path)  # a run folder made by mistake lands here, not in the repository's weights/
    mains = {"train": train_main, "gpt.generate": generate_main}
    for args, message, status in checks:
        result = run_main(mains[args[1]], *args[2:])
        assert result.returncode == status and message in result.stderr, (args, result.stderr)


def test_max_time_trains_for_a_duration_and_counts_down_the_seconds(tmp_path, small_text, monkeypatch):
    import train.__main__ as cli
    from gpt.training.trainer import SteadyClock, Trainer

    class SteadyTrainer(Trainer):  # the command line's trainer on a clock this test controls: about 200 steps in 10 s
        def __init__(self, *args, **kwargs):
            super().__init__(*args, clock=SteadyClock(0.01), **kwargs)

    monkeypatch.setattr(cli, "Trainer", SteadyTrainer)
    out = tmp_path / "timed"
    result = run_main(cli.main, "--preset", "tiny", "--data", str(small_text), "--out", str(out), "--max-time", "10s",
                      "--eval-interval", "1000000")
    assert result.returncode == 0, result.stderr
    assert "/10 s" in result.stderr and "finished at step" in result.stdout  # the bar counts seconds, not steps
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["max_time"] == 10.0 and events[-1]["event"] == "done"
    assert events[-1]["step"] > 100 and events[-1]["elapsed"] < 11.0  # the clock, not the preset's steps, ended it
    assert [e["step"] for e in evals(out)] == [0, events[-1]["step"]]  # evaluated at the start and the deadline
    GPT.from_pretrained(out)


def test_ctrl_c_stops_cleanly_keeps_the_best_weights_and_resume_goes_on(tmp_path, small_text):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "train", "--preset", "tiny", "--data", str(small_text), "--out",
                             str(out), "--max-iters", "100000", "--eval-interval", "50"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "training_state.safetensors").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopping after this step" in stdout + stderr and "stopped at step" in stdout
    assert "Traceback" not in stderr
    stopped_at = evals(out)[-1]["step"]
    assert 0 < stopped_at < 100000
    GPT.from_pretrained(out)
    resumed = run("-m", "train", "--out", str(out), "--resume", "--max-iters", str(stopped_at + 10))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {stopped_at}" in resumed.stdout


def test_torchrun_trains_with_two_processes_over_gloo(tmp_path, small_text):
    out = tmp_path / "ddp"
    result = run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train", "--preset",
                 "tiny", "--data", str(small_text), "--out", str(out), "--max-iters", "30", "--eval-interval", "10")
    assert result.returncode == 0, result.stderr[-3000:]
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 2
    losses = [e["val_loss"] for e in evals(out)]
    assert losses[-1] < losses[0] - 0.5
    GPT.from_pretrained(out)
