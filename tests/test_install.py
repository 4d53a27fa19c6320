"""`pip install .` into a fresh virtual environment, then the package used from another folder, as a user would.

To stay fast and offline, the fresh venv sees this environment's packages (torch, gradio, ...) through a .pth
file, so pip finds every requirement already satisfied and installs only this project (--no-index: nothing is
downloaded). What is imported and run afterwards must come from the new venv, not from the clone.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPTS = ["gpt-train", "gpt-generate", "gpt-evaluate", "gpt-hub", "gpt-publish-space", "gpt-app"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "shared_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = base / "clone"  # a copy of the tracked files: what `pip install git+...` would see
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                             "--no-build-isolation", "-q", str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    elsewhere = base / "elsewhere"  # not the clone: nothing can be imported from the current folder by accident
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GPT_WEIGHTS_DIR")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    return {"venv": venv, "python": python, "site": Path(site), "cwd": elsewhere, "env": env}


def run(installed, *commands, timeout=120) -> list[subprocess.CompletedProcess]:
    """Each command (a list of arguments) in a process of its own, all at once: each imports torch or gradio,
    and two cores start two at a time."""
    procs = [subprocess.Popen(list(command), cwd=installed["cwd"], env=installed["env"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for command in commands]
    results = []
    for command, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return results


def test_the_installed_package_imports_from_anywhere(installed):
    [result] = run(installed, [str(installed["python"]), "-c",
                               "import gpt, train, webapp.space; from gpt import GPT, CharTokenizer; print(gpt.__file__)"])
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed["site"])  # the installed copy, not the clone


def test_each_console_script_answers_help(installed):
    paths = [installed["venv"] / "bin" / script for script in SCRIPTS]
    for path in paths:
        assert path.is_file(), f"pip install did not make {path.name}"
    for path, result in zip(paths, run(installed, *([str(path), "--help"] for path in paths))):
        assert result.returncode == 0, (path.name, result.stderr)
        assert "usage:" in result.stdout and "Traceback" not in result.stderr, path.name


def test_the_installed_default_weights_load_and_generate(installed):
    code = ("from gpt import GPT; from gpt.sharing.weights import default_weights; m = GPT.from_pretrained(default_weights()); "
            "print(default_weights(), m.num_params())")
    result, loaded = run(installed, [str(installed["venv"] / "bin" / "gpt-generate"), "--prompt", "ROMEO:",
                                     "--max-new-tokens", "40", "--seed", "1"],
                         [str(installed["python"]), "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) == len("ROMEO:") + 40 + 1
    assert loaded.returncode == 0, loaded.stderr
    folder, params = loaded.stdout.split()
    assert Path(folder).is_relative_to(installed["site"]) and int(params) == 2_706_240  # the shipped 2.71M


def test_a_usage_error_exits_2_and_a_failure_1_from_the_console_scripts(installed):
    generate = str(installed["venv"] / "bin" / "gpt-generate")
    usage, failure = run(installed, [generate, "--temperature", "-1"], [generate, "--weights", "no/such/folder"])
    assert usage.returncode == 2 and "temperature" in usage.stderr and "Traceback" not in usage.stderr
    assert failure.returncode == 1 and "Traceback" not in failure.stderr
