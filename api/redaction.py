"""Keeps API keys out of access logs.

EventSource and WebSocket clients pass their key as `?api_key=…`, and uvicorn's access log prints every
request's full path, query string included. This filter rewrites the key to `***` before the line is
formatted, so a log file or log shipper never holds a usable key.
"""

from __future__ import annotations

import logging
import re

from api.auth import API_KEY_QUERY

_KEY_IN_QUERY = re.compile(rf"([?&]{API_KEY_QUERY}=)[^&\s]*")


def redact(text: str) -> str:
    return _KEY_IN_QUERY.sub(r"\1***", text)


def redact_api_keys(record: logging.LogRecord) -> bool:
    """Logging filter: redact keys in the message's string arguments (and the message); never drops a record."""
    if isinstance(record.args, tuple):
        record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    return True
