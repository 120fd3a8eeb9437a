"""Service knobs of the API, from `TECHNIC_API_*` environment variables (or `.env`).

Kept out of `technic_core.config.Settings` because only the HTTP service reads them; the keys themselves
(`TECHNIC_API_KEYS`) live there, beside the other credentials. Every number is bounded so a typo such as an
extra zero fails at start-up with the variable's name instead of exhausting memory at the first burst.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from technic_core.config import TechnicSettings


class ApiSettings(TechnicSettings):
    """How the API service behaves; defaults suit one worker on a small machine. Each field is read from
    `TECHNIC_API_` + its name upper-cased, e.g. `TECHNIC_API_MAX_STREAMS_PER_KEY`."""

    model_config = SettingsConfigDict(env_prefix="TECHNIC_API_")

    reads_require_key: bool = Field(False, description="GET endpoints and streams need a key too")
    max_streams_per_key: int = Field(
        100, ge=1, le=100_000, description="concurrent SSE/WebSocket streams per key (anonymous: per client address)"
    )
    max_scans_per_key: int = Field(2, ge=1, le=100, description="queued or running ad-hoc scans per key")
    scan_workers: int = Field(2, ge=1, le=64, description="threads running ad-hoc scans; more scans queue")
    retained_scans: int = Field(
        20, ge=1, le=10_000, description="finished ad-hoc scans kept for replay and stats (a few MB of JSON each)"
    )
    subscriber_queue: int = Field(
        256, ge=1, le=100_000, description="live events buffered per subscriber before it is dropped as lagging"
    )
    heartbeat_s: float = Field(15.0, gt=0, le=300, description="idle seconds before a stream sends a heartbeat")
    poll_interval_s: float = Field(
        0.5, ge=0.01, le=60, description="fallback re-listing of a tailed partition when no notification arrives"
    )
    max_tailed_partitions: int = Field(
        8,
        ge=1,
        le=32,
        description=(
            "sessions streamed at once; each live partition tail holds one thread of the pool that also runs "
            "the read endpoints (40 threads), so this stays well below it"
        ),
    )
    predictor_ttl_s: float = Field(
        30.0, ge=0, le=86_400, description="seconds a loaded scan predictor is reused before re-loading"
    )
