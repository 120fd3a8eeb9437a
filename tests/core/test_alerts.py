"""Webhook notifications: the Slack-compatible body, delivery to a real receiver on loopback, bounded retries,
and a delivery failure that never raises into the caller."""

import logging
import socket

from technic_core.alerts import MAX_FIELD_CHARS, Alert, Webhook, slack_message
from tests.core.webhook_receiver import webhook_receiver

ALERT = Alert(
    title="Technic run failed: daily_scan_job",
    details=(("Run", "abc-123"), ("Error", "x < 0 & y > 1")),
    link="http://dagster.local/runs/abc-123",
    link_label="Open the run",
)


def test_the_message_has_plain_text_and_blocks_with_mrkdwn_escaped():
    title = "*Technic run failed: daily_scan_job*"
    details = "*Run*: abc-123\n*Error*: x &lt; 0 &amp; y &gt; 1"
    link = "<http://dagster.local/runs/abc-123|Open the run>"
    message = slack_message(ALERT)
    assert message["text"] == f"{title}\n{details}\n{link}"
    assert message["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}} for part in (title, details, link)
    ]
    bare = slack_message(Alert(title="t"))
    assert bare == {"text": "*t*", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*t*"}}]}


def test_a_long_error_is_clipped_to_what_slack_accepts():
    message = slack_message(Alert(title="t", details=(("Error", "e" * 10_000),)))
    for block in message["blocks"]:
        assert len(block["text"]["text"]) <= MAX_FIELD_CHARS


def test_an_alert_reaches_a_receiver_on_loopback():
    with webhook_receiver() as receiver:
        assert Webhook(receiver.url).post(ALERT) is True
    assert receiver.bodies == [slack_message(ALERT)]
    assert receiver.paths == ["/services/T000/B000/secret-token"]


def test_server_errors_and_429_are_retried_with_backoff():
    waits: list[float] = []
    with webhook_receiver(503, 429) as receiver:
        assert Webhook(receiver.url, attempts=3, backoff_s=0.5, sleep=waits.append).post(ALERT) is True
    assert len(receiver.bodies) == 3 and waits == [0.5, 1.0]


def test_an_undeliverable_alert_logs_a_warning_without_the_secret_and_never_raises(caplog):
    waits: list[float] = []
    with caplog.at_level(logging.WARNING, logger="technic_core.alerts"), webhook_receiver(500, 500, 500) as receiver:
        assert Webhook(receiver.url, attempts=3, sleep=waits.append).post(ALERT) is False
    assert len(receiver.bodies) == 3 and waits == [1.0, 2.0]
    assert "HTTP 500" in caplog.text and "127.0.0.1" in caplog.text and "secret-token" not in caplog.text

    caplog.clear()
    with webhook_receiver(404) as receiver:
        assert Webhook(receiver.url, sleep=waits.append).post(ALERT) is False
    assert len(receiver.bodies) == 1, "a client error is final"

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert Webhook(f"http://127.0.0.1:{closed}/hook", attempts=2, sleep=waits.append).post(ALERT) is False
    assert "ConnectError" in caplog.text
