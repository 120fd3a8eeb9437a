"""Which source a warehouse's data came from, so one warehouse never mixes two markets.

Why: a simulated market with 200 symbols and one with 5,000 (or a vendor feed) share dates and some tickers;
silently appending one to the other would produce indicators over spliced price series. The first writer
records the source identity in `source.json`; later writers with another identity are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from technic_core.errors import ConfigError
from technic_core.warehouse import Warehouse

MANIFEST = "source.json"


def recorded_source(store: Warehouse) -> dict[str, object] | None:
    path = store.root / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())


def ensure_single_source(store: Warehouse, identity: Mapping[str, object]) -> None:
    """Record `identity` on first use; raise `ConfigError` if the warehouse holds another source's data."""
    recorded = recorded_source(store)
    if recorded is None:
        store.write_json_atomic(store.root / MANIFEST, dict(identity))
        return
    if recorded != dict(identity):
        raise ConfigError(
            f"warehouse {store.root} holds data from {recorded}, not {dict(identity)}; "
            "point TECHNIC_WAREHOUSE at another directory or remove this one"
        )
