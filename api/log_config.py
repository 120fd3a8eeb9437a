"""How `technic serve` logs: uvicorn's own records and Technic's (`api`, `technic_core`) in one stream, each
line ending with the record's structured fields (`extra={...}`) as `key=value` pairs.

Why a log_config for uvicorn: uvicorn configures logging itself when it starts, and its default config
leaves the `api` and `technic_core` loggers without a handler (their INFO lines vanish) and would drop the
fields the code attaches with `extra=`, which are most of what an operator needs (scan ids, paths, keys'
short hashes).
"""

from __future__ import annotations

import logging
from typing import Any

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
#: uvicorn's colour-aware formatters add this one to their records.
_FORMATTER_ATTRIBUTES = frozenset({"color_message"})


class StructuredFormatter(logging.Formatter):
    """A plain formatter that appends the record's extra fields as `key=value`, sorted by key."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and key not in _FORMATTER_ATTRIBUTES and not key.startswith("_")
        }
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_field_value(value)}" for key, value in sorted(fields.items()))


def _field_value(value: object) -> str:
    """A field as written after `key=`: quoted when it holds a space, so lines stay splittable."""
    text = str(value)
    return repr(text) if " " in text else text


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config=`: one stderr handler for uvicorn, `api` and
    `technic_core`, at `level`."""
    handler = {"class": "logging.StreamHandler", "formatter": "structured", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["default"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": StructuredFormatter,
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            }
        },
        "handlers": {"default": handler},
        "loggers": {name: logger for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "api", "technic_core")},
    }
