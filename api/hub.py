"""In-process fan-out of stream events: one topic per scan or partition, any number of subscribers each.

Everything here runs on the event loop thread, which is what makes replay-then-tail exact: `subscribe`
snapshots the topic's log after the client's cursor and registers the subscriber in one synchronous step, so
no event published concurrently can be missed or delivered twice. Producers on other threads (ad-hoc scan
workers) publish with `loop.call_soon_threadsafe(topic.publish, event)`.

Each subscriber has a bounded live queue. Publishing never waits for a subscriber: one whose queue is full
is marked lagging, gets a `lagging` event telling it where to resume, and is closed, so a slow client never
slows the others or grows memory without bound. The replayed backlog is not counted against the bound —
it is already in memory, in the topic's log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any

from api.events import END, FINAL_EVENTS, RESULT, StreamEvent, heartbeat_event, lagging_event

logger = logging.getLogger(__name__)

#: Most events handed to a transport at once; bounds the size of one write when a long backlog replays.
BURST_EVENTS = 64


class TooManyTails(Exception):
    """A new session stream would exceed the number of partitions followed at once."""


class Subscriber:
    """One client's view of a topic: the replayed backlog, then live events, then the end.

    Live events pass the same cursor filter as the replay: a session topic rebuilt from its files after the
    client reconnected republishes rows the client already has, and those must not reach it again.

    Waking costs one future per wait and no timer per event: with a thousand subscribers a batch wakes a
    thousand of them, so the idle heartbeat is one timer per subscriber that is re-armed only when it
    fires, not an `asyncio.timeout` entered and left around every wait.
    """

    def __init__(self, topic: Topic, replay: list[StreamEvent], queue_size: int, cursor: int | None) -> None:
        self.topic = topic
        self.queue_size = queue_size
        self.cursor = cursor
        self.last_seq = cursor or 0
        self.lagging = False
        self._replay = deque(replay)
        self._live: deque[StreamEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._finished = False
        self._heartbeat_due = False
        self._timer: asyncio.TimerHandle | None = None
        self._bursts = 0
        self._last_burst_at = 0.0

    def offer(self, event: StreamEvent) -> None:
        """Queue a live event the client lacks, or mark the subscriber lagging when its queue is full."""
        visible = event.after(self.cursor)
        if visible is None or self.lagging or self._finished:
            return
        if len(self._live) >= self.queue_size:
            self.lagging = True
            logger.warning("stream subscriber lagging", extra={"stream": self.topic.key, "queue_size": self.queue_size})
        else:
            self._live.append(visible)
        self._wake()

    async def bursts(self, heartbeat_s: float) -> AsyncGenerator[list[StreamEvent], None]:
        """Yield every event that is ready as one list, until `end` or `lagging` (both yielded).

        Why lists: a batch publishes a `result` and a `progress` event back to back, and a transport that
        writes what is ready in one go (SSE: one chunk) halves its per-write overhead at high fan-out.
        After `heartbeat_s` seconds without a list the list is a single heartbeat.
        """
        loop = asyncio.get_running_loop()
        try:
            while not self._finished:
                burst = [await self._next(loop, heartbeat_s)]
                while len(burst) < BURST_EVENTS and burst[-1].kind not in FINAL_EVENTS:
                    ready = self._ready()
                    if ready is None:
                        break
                    burst.append(ready)
                for event in burst:
                    if event.kind == RESULT:
                        self.last_seq = event.seq
                self._finished = burst[-1].kind in FINAL_EVENTS
                self._bursts += 1
                self._last_burst_at = loop.time()
                self._heartbeat_due = False
                yield burst
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def events(self, heartbeat_s: float) -> AsyncGenerator[StreamEvent, None]:
        """`bursts`, one event at a time (for transports that send a message per event)."""
        async with aclosing(self.bursts(heartbeat_s)) as bursts:
            async for burst in bursts:
                for event in burst:
                    yield event

    def _ready(self) -> StreamEvent | None:
        if self._replay:
            return self._replay.popleft()
        if self.lagging:
            return lagging_event(self.topic.scan_id, self.last_seq, self.queue_size)
        if self._live:
            return self._live.popleft()
        return None

    async def _next(self, loop: asyncio.AbstractEventLoop, heartbeat_s: float) -> StreamEvent:
        """The next event, or a heartbeat once `heartbeat_s` seconds passed without a list."""
        while (ready := self._ready()) is None:
            if self._heartbeat_due:
                self._heartbeat_due = False
                return heartbeat_event(self.last_seq)
            if self._timer is None:
                self._arm_heartbeat(loop, loop.time() + heartbeat_s, heartbeat_s)
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return ready

    def _arm_heartbeat(self, loop: asyncio.AbstractEventLoop, when: float, heartbeat_s: float) -> None:
        """A heartbeat is due at `when` unless a list is yielded before; then the timer is re-armed for
        `heartbeat_s` after the latest list (so a busy stream touches no timer per event)."""
        bursts = self._bursts

        def fire() -> None:
            self._timer = None
            if self._finished:
                return
            if self._bursts == bursts:
                self._heartbeat_due = True
                self._wake()
            else:
                self._arm_heartbeat(loop, self._last_burst_at + heartbeat_s, heartbeat_s)

        self._timer = loop.call_at(when, fire)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Topic:
    """The ordered log of one stream and its current subscribers."""

    def __init__(self, key: str, scan_id: str) -> None:
        self.key = key
        self.scan_id = scan_id
        self.log: list[StreamEvent] = []
        self.subscribers: set[Subscriber] = set()
        self.ended = False
        self.last_seq = 0

    def publish(self, event: StreamEvent) -> None:
        """Append to the log and offer to every subscriber; events after `end` are ignored."""
        if self.ended:
            return
        self.log.append(event)
        if event.kind == RESULT:
            self.last_seq = event.seq
        self.ended = event.kind == END
        for subscriber in self.subscribers:
            subscriber.offer(event)

    def subscribe(self, cursor: int | None, queue_size: int) -> Subscriber:
        replay = [event for event in (logged.after(cursor) for logged in self.log) if event is not None]
        subscriber = Subscriber(self, replay, queue_size, cursor)
        if not self.ended:
            self.subscribers.add(subscriber)
        return subscriber


#: Starts the producer of a session topic (a partition tail) and returns its task.
TailStarter = Callable[[Topic, dt.date], Coroutine[Any, Any, None]]


class StreamHub:
    """Topics by key: `session:YYYY-MM-DD` (a results partition) or `scan:<scan_id>` (an ad-hoc scan).

    A session topic exists while it has subscribers: the first one starts its partition tail (one watcher
    per partition, whatever the number of clients) and the last one to leave stops it; the next subscriber
    rebuilds the log from the files. Scan topics live until their scan is forgotten.
    """

    def __init__(self, queue_size: int, tail: TailStarter, max_tails: int) -> None:
        self.queue_size = queue_size
        self._tail = tail
        self._max_tails = max_tails
        self._topics: dict[str, Topic] = {}
        self._tails: dict[str, asyncio.Task[None]] = {}

    @staticmethod
    def session_key(session: dt.date) -> str:
        return f"session:{session.isoformat()}"

    @staticmethod
    def scan_key(scan_id: str) -> str:
        return f"scan:{scan_id}"

    def create_scan_topic(self, scan_id: str) -> Topic:
        topic = Topic(self.scan_key(scan_id), scan_id)
        self._topics[topic.key] = topic
        return topic

    def drop_scan_topic(self, scan_id: str) -> None:
        """Forget a scan's topic; subscribers already attached keep it until its `end` reaches them."""
        self._topics.pop(self.scan_key(scan_id), None)

    def scan_topic(self, scan_id: str) -> Topic | None:
        return self._topics.get(self.scan_key(scan_id))

    def subscribe_scan(self, scan_id: str, cursor: int | None) -> Subscriber | None:
        topic = self.scan_topic(scan_id)
        return None if topic is None else topic.subscribe(cursor, self.queue_size)

    def subscribe_session(self, session: dt.date, cursor: int | None) -> Subscriber:
        """Attach to a session's topic, starting its tail if needed; `TooManyTails` beyond the cap."""
        key = self.session_key(session)
        topic = self._topics.get(key)
        if topic is None:
            if self.tail_count >= self._max_tails:
                raise TooManyTails(
                    f"{self.tail_count} sessions are being streamed, the most this server follows at once "
                    f"(TECHNIC_API_MAX_TAILED_PARTITIONS={self._max_tails}); stream one of them or retry later"
                )
            topic = self._topics[key] = Topic(key, session.isoformat())
            self._tails[key] = asyncio.create_task(self._tail(topic, session), name=f"tail {key}")
        return topic.subscribe(cursor, self.queue_size)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Detach; a session topic left without subscribers stops its tail and is dropped."""
        topic = subscriber.topic
        topic.subscribers.discard(subscriber)
        if topic.key in self._tails and not topic.subscribers:
            self._tails.pop(topic.key).cancel()
            del self._topics[topic.key]

    @property
    def subscriber_count(self) -> int:
        return sum(len(topic.subscribers) for topic in self._topics.values())

    @property
    def tail_count(self) -> int:
        """Partitions being followed now; a tail that reached its session's end holds no thread any more."""
        return sum(not task.done() for task in self._tails.values())

    async def aclose(self) -> None:
        """Stop every partition tail (at shutdown)."""
        tails = list(self._tails.values())
        for task in tails:
            task.cancel()
        await asyncio.gather(*tails, return_exceptions=True)
        self._tails.clear()
