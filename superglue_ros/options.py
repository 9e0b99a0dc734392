"""Options: declared once (``Option``), checked in one place (components, FrontEnd, keyframe
policy, global descriptor, config files): one wording for a misspelt option, never dropped
silently."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def check_options(what: str, given, known, noun: str = "option") -> None:
    """ValueError naming `what`, the unknown keys of `given` and the `known` ones."""
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f"{what}: unknown {noun}(s) {sorted(unknown)}; known: {sorted(known)}")


@dataclass(frozen=True)
class Option:
    """One option declared once: its default (whose type is the option's type), a description,
    and a range (min, max[, step]) or choices. Defaults dicts, validation, the node's ROS
    parameter descriptors and the YAML check are all derived from these declarations."""

    name: str
    default: object
    description: str
    range: tuple | None = None
    choices: tuple | None = None

    def problem(self, value) -> str | None:
        """Why `value` is not allowed (None when it is)."""
        kind = type(self.default)
        if kind is bool:
            ok = isinstance(value, (bool, np.bool_))
        elif kind is int:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        elif kind is float:
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            )
        else:
            ok = isinstance(value, kind)
        if not ok:
            return f"{self.name} must be {kind.__name__}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {list(self.choices)}, got {value!r}"
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return f"{self.name} must be in [{self.range[0]}, {self.range[1]}], got {value!r}"
        return None


def defaults(options) -> dict:
    """{name: default} of declared options, in declaration order."""
    return {option.name: option.default for option in options}


def validate(what: str, options, conf: dict | None) -> dict:
    """The declared defaults updated with `conf`, after the unknown-key, type, range and choice
    checks (ValueError naming `what` and every problem)."""
    conf = dict(conf or {})
    check_options(what, conf, [option.name for option in options])
    problems = [
        p
        for p in (option.problem(conf[option.name]) for option in options if option.name in conf)
        if p
    ]
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))
    return {**defaults(options), **conf}
