"""Screens: users' own filters over result columns.

`language` parses, type-checks and compiles a screen's text (``rsi < 30 and sector == "Energy"``) to a polars
expression; `library` keeps the saved screens — built-ins plus the users' own in the warehouse's screens.yaml,
with a version history. docs/screens.md is the reference.
"""

from technic_core.screens.language import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_LITERAL_LENGTH,
    MAX_TERMS,
    PREV_PREFIX,
    Kind,
    Screen,
    ScreenError,
    ScreenLimitError,
    ScreenSyntaxError,
    ScreenTypeError,
    UnknownNameError,
    column_kinds,
    compile,
    fingerprint,
    kind_of,
    normalize,
    prev_name,
    with_previous,
)

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_LITERAL_LENGTH",
    "MAX_TERMS",
    "PREV_PREFIX",
    "Kind",
    "Screen",
    "ScreenError",
    "ScreenLimitError",
    "ScreenSyntaxError",
    "ScreenTypeError",
    "UnknownNameError",
    "column_kinds",
    "compile",
    "fingerprint",
    "kind_of",
    "normalize",
    "prev_name",
    "with_previous",
]
