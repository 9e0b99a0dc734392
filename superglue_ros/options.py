"""Option checks shared by every configurable part (components, FrontEnd, keyframe policy,
global descriptor, config files): one wording for a misspelt option, never dropped silently."""
from __future__ import annotations


def check_options(what: str, given, known, noun: str = 'option') -> None:
    """ValueError naming `what`, the unknown keys of `given` and the `known` ones."""
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f'{what}: unknown {noun}(s) {sorted(unknown)}; known: {sorted(known)}')
