"""Notifications to a chat webhook: Slack-compatible JSON, posted with a timeout and a bounded retry.

Whatever raised the alert (a failed run, an overdue scan) has already happened, so a notification that
cannot be delivered must not fail the caller too: `Webhook.post` logs a warning and returns False instead
of raising. The webhook URL is a secret (Slack's carry their token), so logs name its host only.

The message is `{"text": ..., "blocks": [...]}`: `text` alone is understood by Slack, Mattermost, Rocket.Chat
and most "Slack-compatible" receivers; `blocks` is Slack's richer layout of the same content.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

_log = logging.getLogger(__name__)

#: Slack refuses a section text longer than this; long error messages are cut to fit.
MAX_FIELD_CHARS = 2_900


@dataclass(frozen=True)
class Alert:
    """One notification: a title, named details in order, and optionally a link to follow."""

    title: str
    details: Sequence[tuple[str, str]] = ()
    link: str | None = None
    link_label: str = "Open"


def _escape(text: str) -> str:
    """Slack's mrkdwn reserves &, < and > (links, mentions); a literal one must be escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[: MAX_FIELD_CHARS - 1] + "…"


def slack_message(alert: Alert) -> dict[str, object]:
    """The JSON body for `alert`: the title, the details and the link as plain `text` (also the
    notification preview) and as one Slack section block each."""
    title = f"*{_escape(alert.title)}*"
    details = "\n".join(f"*{_escape(name)}*: {_escape(_clip(value))}" for name, value in alert.details)
    link = f"<{alert.link}|{_escape(alert.link_label)}>" if alert.link else ""
    parts = [part for part in (title, details, link) if part]
    return {
        "text": "\n".join(parts),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _clip(part)}} for part in parts],
    }


class Webhook:
    """Posts alerts to one incoming-webhook URL.

    A timeout, a transport error, 429 or 5xx is retried up to `attempts` times in all, waiting
    `backoff_s`, then twice that, and so on; any other status is final (a wrong URL or a refused payload
    does not improve with retrying). `sleep` is injectable so tests do not wait.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self._host = httpx.URL(url).host
        self._timeout = httpx.Timeout(timeout_s)
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._sleep = sleep

    def post(self, alert: Alert) -> bool:
        """Deliver `alert`; True when the receiver accepted it (2xx), False after logging why not."""
        body = slack_message(alert)
        problem = "no attempt made"
        with httpx.Client(timeout=self._timeout) as client:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = client.post(self._url, json=body)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}"
                else:
                    if response.is_success:
                        return True
                    problem = f"HTTP {response.status_code}"
                    if response.status_code != 429 and response.status_code < 500:
                        break
                if attempt < self._attempts:
                    self._sleep(self._backoff_s * 2 ** (attempt - 1))
        _log.warning("alert not delivered to the webhook at %s: %s (%r)", self._host, problem, alert.title)
        return False
