"""The one "did you mean" of the harness: the closest known name to a mistyped one, by ``difflib``'s ratio.

Config keys, group options, choice values and model names all go through :func:`closest`, and an unknown
setting is always worded by :func:`unknown_setting`, so a near miss reads the same wherever it is caught.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = ["closest", "unknown_setting"]


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option most similar to ``word`` (``difflib`` ratio at least 0.6), or None when none is close."""
    near = difflib.get_close_matches(word, list(options), n=1)
    return near[0] if near else None


def unknown_setting(key: str, near: str | None, known: Sequence[str] = ()) -> str:
    """``<key> is not a setting of this run (did you mean <near>?); ...``, listing ``known`` without a near miss."""
    if near:
        hint = f"did you mean {near}?"
    else:
        hint = f"known: {', '.join(known)}" if known else "no setting has a similar name"
    return f"{key} is not a setting of this run ({hint}); remove it or fix its name"
