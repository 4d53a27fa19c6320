"""A run's time budget: the one place where a duration becomes seconds and is checked.

The command line's --max-time (120, 90s, 2m, 1h, 1m30s), a TrainConfig's max_time, the app's "Train for" minutes
and a public app's cap on a visitor's minutes all come through `seconds`; a cap is laid on a run with `within`.
"""

from __future__ import annotations

import math
import re

from gpt.errors import ConfigError

TEXT = re.compile(r"\s*(?:(\d+(?:\.\d*)?)h)?\s*(?:(\d+(?:\.\d*)?)m)?\s*(?:(\d+(?:\.\d*)?)s?)?\s*")


def seconds(value, *, unit: float = 1.0, most: float = math.inf, what: str = "max_time") -> float:
    """Seconds from a duration: a number of units (seconds; the app's minutes: unit=60) or text (120, "90s", "2m",
    "1.5h", "1m30s"); empty or 0: no time limit. Anything else, or more than `most` units, is a ConfigError that
    says what to write."""
    units = "minutes" if unit == 60 else "seconds"
    if value is None or value == "":
        return 0.0
    if isinstance(value, str):
        parts = TEXT.fullmatch(value.lower())
        if not parts or not any(parts.groups()):
            raise ConfigError(f"{what} {value!r} is not a duration: write seconds (120) or 90s, 2m, 1h, 1m30s")
        h, m, s = (float(g or 0) for g in parts.groups())
        total = 3600 * h + 60 * m + s
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        total = float(value) * unit
    else:
        raise ConfigError(f"{what} must be a number of {units} (0: no time limit), not {value!r}")
    if not 0 <= total <= most * unit or total == math.inf:
        upto = f"up to {most:g} {units}" if most < math.inf else f"or more {units}"
        raise ConfigError(f"{what}: give 0 (no time limit) {upto}, not {value!r}")
    return total


def within(max_time: float, budget: float) -> float:
    """A run's max_time held to a budget of seconds: the budget where the run has no clock (0), else the shorter."""
    return min(max_time, budget) if max_time else budget
