"""One exception type per kind of user mistake. Each message is written to be shown to a person as is."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class GPTError(Exception):
    """Base class: something the user can fix, with a message that says how."""


class ConfigError(GPTError, ValueError):
    """A model or training setting that cannot work (e.g. n_embd not divisible by n_head)."""


class UnknownCharactersError(GPTError, ValueError):
    """Text contains characters that are not in the model's vocabulary."""

    def __init__(self, chars: list[str], vocab_size: int):
        self.chars = chars
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars[:20])
        more = f" and {len(chars) - 20} more" if len(chars) > 20 else ""
        super().__init__(
            f"The text contains {len(chars)} character(s) this model does not know: {shown}{more}. "
            f"It only knows the {vocab_size} characters of the text it was trained on."
        )


class DataError(GPTError):
    """Training text that is missing, unreadable, not UTF-8, too short, or fails its checksum."""


class WeightsError(GPTError):
    """A weights folder or Hub repo that is missing, corrupt, not ours, or does not match the model."""


class DeviceError(GPTError):
    """A requested device (cuda, mps, ...) that this machine does not have."""


class SamplingError(GPTError, ValueError):
    """Generation settings out of range (negative temperature, top_p above 1, ...)."""


class BusyError(GPTError):
    """A second training run asked for while one is going, or a live model asked for when none is training."""


class EngineError(GPTError):
    """The generation engine's process stopped or could not start (gpt.generation.engine_process)."""


class HubError(GPTError):
    """A Hub push, pull or publish that failed: bad repo id, token refused, repo missing, no network, not ours."""


class ExportError(GPTError, ValueError):
    """Weights that transformers or ONNX cannot hold exactly, or an export that would overwrite (exit status 2)."""


USAGE = 2  # the command was asked for something impossible (a bad setting): as argparse exits for a bad flag
FAILURE = 1  # the command could not do what was asked (no such weights, no network, token refused, ...)


def exit_status(error: GPTError) -> int:
    """2 for a usage error (the ValueError kinds: ConfigError, SamplingError, UnknownCharactersError), else 1."""
    return USAGE if isinstance(error, ValueError) else FAILURE


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command line's main(argv): a GPTError ends it with one "error: ..." line (never a traceback) and
    exit status 2 for a usage error or 1 for a failure (see exit_status); Ctrl-C with status 130.

    This is the one place the command lines' exit statuses are decided."""

    @functools.wraps(main)
    def run(argv=None) -> int:
        try:
            return main(argv)
        except GPTError as e:
            print(f"error: {e}", file=sys.stderr)
            return exit_status(e)
        except KeyboardInterrupt:
            return 130

    return run
