"""Typed exceptions: every user-facing failure is one of these, with a message that names the culprit.

Adapters (CLI, Dagster, API) catch `TechnicError` and show its message instead of a traceback.
"""


class TechnicError(Exception):
    """Base class of every error Technic raises on purpose."""


class ConfigError(TechnicError, ValueError):
    """A setting or parameter is invalid; the message names the field."""


class NotASessionError(ConfigError):
    """A date that is not an NYSE session was given where a session is required."""


class UnknownSourceError(ConfigError):
    """The requested market-data source name is not registered."""


class DataSourceError(TechnicError):
    """A market-data source failed to deliver (after retries, where it retries)."""


class WarehouseError(TechnicError):
    """The warehouse could not be read or written."""


class CorruptFileError(WarehouseError):
    """A warehouse file exists but cannot be decoded; the message names the file."""
