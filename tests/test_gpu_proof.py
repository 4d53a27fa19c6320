"""The GPU proof (bench/gpu.py) kept from rotting: its dry run, every part on the CPU at toy sizes, and what it
carries to a bare GPU machine."""

import importlib.metadata
import json
import re
import subprocess
import sys

from conftest import ROOT


def test_the_gpu_proofs_dry_run_runs_every_part(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "bench/gpu.py", "--dry-run", "--out", str(out), "--work",
                             str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=240)
    report = json.loads((out / "gpu.json").read_text())
    assert result.returncode == 0, (result.stdout, (out / "gpu.log").read_text()[-4000:])
    assert report["ok"] and report["dry_run"] and report["machine"]["torch"]
    parts = report["parts"]
    assert set(parts) == {"tests", "train", "generate", "app"} and all(p["ok"] for p in parts.values())
    assert parts["tests"]["passed"] >= 1 and parts["tests"]["failed"] == 0 and (out / "junit.xml").is_file()
    train = parts["train"]
    assert train["throughput"]["eager"]["tokens_per_sec"] > 0
    run = train["run"]
    assert run["tokens_per_sec"] > 0 and run["seconds"] <= train["budget_s"] + 1  # the clock ended it
    assert run["seconds_to_target"] is not None and run["best_val"] <= train["target_val"]
    assert train["longer"]["best_val"] < 4
    for dtype in ("float32", "bfloat16"):
        figures = parts["generate"][dtype]
        assert figures["one_stream_chars_per_sec"] > 0 and figures["crowd_chars_per_sec_total"] > 0
    app = parts["app"]
    assert app["chart_points"] >= 3 and app["state"] == "stopped" and app["best_weights_kept"]
    assert app["generated"].startswith("ROMEO:")


def test_the_wheels_carried_to_the_gpu_are_the_locks_versions():
    """bench/gpu_carry.sh pins each name of bench/gpu_wheels.txt at the app lock's version: what is carried is what
    the suite runs with here."""
    names = re.findall(r"^([A-Za-z0-9_.-]+)\s*$", (ROOT / "bench" / "gpu_wheels.txt").read_text(), re.M)
    assert {"gradio", "gradio-client", "fastapi", "uvicorn", "pydantic"} <= set(names)
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    for name in names:
        assert name in lock, f"{name} is carried to the GPU but not in requirements.txt"
        assert importlib.metadata.version(name) == lock[name], name
