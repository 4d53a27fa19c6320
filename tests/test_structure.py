"""The shape of the house: dependencies point one way (app -> gpt, train -> gpt), gpt in wings, the model stands alone."""

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("gpt", "train", "webapp")


WINGS = ("training", "generation", "sharing", "ladder", "insides")  # gpt's sub-packages (docs/code.md)


def modules() -> dict[str, Path]:
    """Every module of the project by its import name, the wings' (gpt.training.trainer, ...) included."""
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if path.stem == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path] = {}) -> set[str]:
    """Every module an import statement anywhere in the file names, top level and inside functions alike.

    `from gpt.sharing import weights` names gpt.sharing.weights when that is a module of the project, else the package
    gpt.sharing.
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(known)
            names.update(submodules or {node.module})
    return names


def project_imports(path: Path, known: dict[str, Path]) -> set[str]:
    return imports(path, known) & set(known)


def test_no_module_of_the_project_imports_itself_back_not_even_inside_a_function():
    known = modules()
    graph = {name: project_imports(path, known) - {name} for name, path in known.items()}

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    return trail + [dep]
                if dep not in trail:
                    stack.append((dep, trail + [dep]))
        return None

    cycles = [c for c in map(cycle_from, graph) if c]
    assert not cycles, f"import cycles: {[' -> '.join(c) for c in cycles]}"


def test_the_model_needs_nothing_of_the_project_but_its_config_and_errors():
    known = modules()
    assert project_imports(ROOT / "gpt" / "model.py", known) == {"gpt.config", "gpt.errors"}


def test_gpt_keeps_at_most_a_dozen_modules_at_its_top_and_the_rest_in_wings():
    top = sorted(p.name for p in (ROOT / "gpt").glob("*.py"))
    assert len(top) <= 12, top
    folders = sorted(p.name for p in (ROOT / "gpt").iterdir() if p.is_dir() and any(p.glob("*.py")))
    assert folders == sorted(WINGS)


def test_each_wing_is_a_package_that_installs():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # [tool.setuptools] packages lists each
    for wing in WINGS:
        assert (ROOT / "gpt" / wing / "__init__.py").is_file(), wing
        assert f'"gpt.{wing}"' in pyproject, f"pyproject.toml does not install gpt.{wing}"


def test_the_model_and_what_it_stands_on_import_no_wing():
    # tokenizer.py is not here: CharTokenizer.from_pretrained reads a weights folder (gpt.sharing.weights)
    known = modules()
    for core in ("model", "config", "errors", "device", "memory", "data"):
        wings = {n for n in project_imports(ROOT / "gpt" / f"{core}.py", known) if n.split(".")[:2][-1] in WINGS}
        assert not wings, f"gpt/{core}.py imports {wings}"


def test_docs_code_md_names_every_module_of_gpt():
    listed = (ROOT / "docs" / "code.md").read_text(encoding="utf-8")
    for path in (ROOT / "gpt").rglob("*.py"):
        if path.name != "__init__.py":
            assert f"`{path.relative_to(ROOT).as_posix()}`" in listed, path


def test_the_library_knows_nothing_of_the_app():
    for path in (ROOT / "gpt").rglob("*.py"):  # the wings too
        text = path.read_text(encoding="utf-8")
        assert not any(name.split(".")[0] in ("gradio", "webapp", "app") for name in imports(path)), path.name
        for tab in ("Train tab", "Generate tab", "Runs tab", "Ladder tab", "Insides tab", "Share tab", "another tab"):
            assert tab not in text, f"{path.name} speaks of the app's {tab}"


def test_the_app_never_touches_tensors():
    for path in [ROOT / "app.py", *(ROOT / "webapp").glob("*.py")]:
        assert not {n for n in imports(path) if n.split(".")[0] == "torch"}, f"{path.name} imports torch"


def test_each_tab_is_its_own_module_and_the_entry_point_is_short():
    for tab in ("train", "generate", "runs", "ladder", "insides", "share"):
        assert "def build(" in (ROOT / "webapp" / f"{tab}.py").read_text(encoding="utf-8")
    assert len((ROOT / "app.py").read_text(encoding="utf-8").splitlines()) < 80


def test_the_run_log_is_opened_in_one_module_only():
    # gpt.training.log writes it down and reads it; everyone else asks it (a second reader once decided "interrupted"
    # by its own rule)
    for name, path in modules().items():
        if name == "gpt.training.log":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            assert not (isinstance(node, ast.Constant) and node.value == "metrics.jsonl"), name
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                right = node.right.attr if isinstance(node.right, ast.Attribute) else getattr(node.right, "id", "")
                assert right != "METRICS_FILE", f"{name} builds the log's path itself: ask gpt.training.log"


def test_no_module_imports_another_modules_private_name():
    known = modules()
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("gpt", "train",
                                                                                                 "webapp"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{name} imports {private} from {node.module}: make it public or move it"


def test_importing_the_app_s_modules_does_no_work_starting_the_app_does(tmp_path):
    import os
    import subprocess
    import sys

    run = tmp_path / "weights" / "cut-short"
    run.mkdir(parents=True)
    (run / "training_state.safetensors").write_bytes(b"")
    torn = run / ".model.safetensors.123.tmp"  # what a kill in the middle of a save leaves
    torn.write_bytes(b"half")
    os.utime(torn, (1000, 1000))
    env = {**os.environ, "GPT_WEIGHTS_DIR": str(tmp_path / "weights"), "PYTHONPATH": str(ROOT)}
    tabs = ("import webapp.state, webapp.train, webapp.generate, webapp.runs, webapp.ladder, webapp.insides, "
            "webapp.share")
    # one process: imported, nothing has changed on disk; started, the default weights are there and the torn save gone
    untouched = (f"import os; assert sorted(os.listdir({str(tmp_path / 'weights')!r})) == ['cut-short']; "
                 f"assert os.path.exists({str(torn)!r})")
    subprocess.run([sys.executable, "-c", f"{tabs}; {untouched}; webapp.state.startup()"], env=env, check=True,
                   cwd=tmp_path, timeout=300)
    assert (tmp_path / "weights" / "default" / "model.safetensors").is_file() and not torn.exists()
