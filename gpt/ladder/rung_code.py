"""What each rung of the ladder adds, as a diff of the code that builds and trains it.

The code is read from the modules themselves (inspect.getsource), so the view cannot drift from what runs: each
piece names the object a rung adds or changes and the one it replaces, and a rung whose idea is in how it trains
shows the settings that change and the code they switch on.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

from gpt import model
from gpt.ladder import beyond
from gpt.ladder import rungs as ladder
from gpt.training import optim, trainer


@dataclass
class Piece:
    """One object of the code, as the rung has it, against the rung before (None: new in this rung)."""
    path: str  # gpt/ladder/beyond.py
    name: str  # RotaryAttention.forward
    replaces: tuple[str, str] | None  # (name, path) of what it replaces: ("MultiHeadAttention.forward", "gpt/model.py")
    diff: list[str]  # the whole object, each line marked "+", "-" or " "


def _body(n: int):
    return ladder.BODIES[n]  # a lambda: its source is the line of the table that builds the rung's body


# (what the rung before has, what this rung has) for every object a rung adds or changes, in reading order
PIECES = {
    1: [(None, ladder.BigramLanguageModel)],
    2: [(ladder.BigramLanguageModel, ladder.AttentionLanguageModel), (None, _body(2)), (None, model.Head)],
    3: [(_body(2), _body(3)), (None, ladder.Heads)],
    4: [(_body(3), _body(4))],
    5: [(_body(4), _body(5)), (None, ladder.ResidualBlock), (None, model.MultiHeadAttention)],
    6: [(ladder.ResidualBlock, model.Block), (None, model.FeedForward),
        (ladder.AttentionLanguageModel.__init__, model.GPTLanguageModel.__init__),
        (ladder.AttentionLanguageModel.forward, model.GPTLanguageModel.forward)],
    7: [],  # the same code, bigger settings
    8: [],  # rung 7 at a CPU's size, timed
    9: [(None, trainer.get_lr)],
    10: [(None, optim.MuonWithAdamW)],
    11: [(model.MultiHeadAttention.forward, beyond.RotaryAttention.forward), (None, beyond.RotaryAttention.__init__),
         (None, beyond.rotate), (model.Block.forward, beyond.BeyondBlock.forward),
         (model.GPTLanguageModel.forward, beyond.BeyondGPT.forward)],
    12: [(None, beyond.QKNormAttention.__init__), (beyond.RotaryAttention.forward, beyond.QKNormAttention.forward)],
    13: [(model.FeedForward, beyond.ReLUSquaredFeedForward), (None, beyond.ReLUSquared)],
    14: [(None, trainer.moving_average)],
}

ROOT = Path(__file__).resolve().parents[2]  # the project: gpt/ladder/ is two folders down


def where(obj) -> tuple[str, str]:
    """(file from the project's root, name in its module): BODIES[3] for a line of the body table."""
    path = Path(inspect.getsourcefile(obj)).resolve().relative_to(ROOT).as_posix()
    if getattr(obj, "__name__", "") == "<lambda>":
        number = next(n for n, body in ladder.BODIES.items() if body is obj)
        return path, f"BODIES[{number}]"
    return path, obj.__qualname__


def source(obj) -> list[str]:
    if getattr(obj, "__name__", "") == "<lambda>":
        return [inspect.getsource(obj).strip()]
    return textwrap.dedent(inspect.getsource(obj)).splitlines()


def settings_diff(rung: ladder.Rung) -> list[str]:
    """The training settings this rung changes from the one before, as diff lines."""
    if rung.before is None:
        return []
    old, new = ladder.rung(rung.before).settings, rung.settings
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            lines += [f"-{key}={old.get(key)!r}", f"+{key}={new.get(key)!r}"]
    return lines


def pieces(number: int) -> list[Piece]:
    """The code rung `number` adds to the rung before it."""
    found = []
    for before, after in PIECES.get(number, []):
        path, name = where(after)
        new = source(after)
        if before is None:
            found.append(Piece(path, name, None, ["+" + line for line in new]))
            continue
        old_path, old_name = where(before)
        lines = difflib.unified_diff(source(before), new, lineterm="", n=10**6)
        diff = [line for line in lines if not line.startswith(("---", "+++", "@@"))]
        found.append(Piece(path, name, (old_name, old_path), diff))
    return found


@functools.lru_cache(maxsize=None)  # builds two models (rung 7 has 10.8M parameters): once per rung
def params_added(number: int, vocab_size: int = 65) -> int | None:
    """Parameters this rung's model has more than the rung before's (at each one's own settings)."""
    rung = ladder.rung(number)

    def count(r: ladder.Rung) -> int:
        return ladder.build(r.number, ladder.train_config(r).model_config(vocab_size)).num_params()

    return count(rung) - count(ladder.rung(rung.before)) if rung.before else count(rung)


BENCH = ROOT / "bench" / "results" / "ladder_beyond.json"  # python bench/ladder.py (not in an installed package)


def flight_figures() -> tuple[dict[int, dict], str]:
    """The second flight as bench/ladder.py measured it: {rung: its row}, and where (machine, seconds, seeds)."""
    import json

    try:
        report = json.loads(BENCH.read_text())
    except (OSError, ValueError):
        return {}, ""
    where = f"{report['machine']}, {report['seconds_per_rung']:g} s a rung, {report['date']}: `{report['command']}`"
    return {row["rung"]: row for row in report["rungs"]}, where
