"""Shared helpers of the bus backend tests: a delivery recorder, an outbox sink, event makers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from examples.chat.declaration import ChatEvent
from tests.support import CHAT
from wsmigrate.unified import BusBackend, Event, Publication
from wsmigrate.unified.publication import Ingress, Rollout

INGRESS = Ingress(origin="admin", audience="7", rollout=Rollout("shadow", 25, 3),  # every field set: it must travel
                  source_frame='{"type": "old_shape", "n": 1}')


async def append(backend: BusBackend, event: Event) -> bool:
    """Publish `event` straight into a backend, on its rule's topics."""
    return await backend.append(event, CHAT.delivery_topics(event), INGRESS)


class Delivered:
    """The `deliver` callback of a backend under test: records publications, lets tests wait for them."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self._grew = asyncio.Event()

    def __call__(self, publication: Publication) -> None:
        self.publications.append(publication)
        self._grew.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Publication]:
        async with asyncio.timeout(timeout):
            while len(self.publications) < count:
                self._grew.clear()
                await self._grew.wait()
        return self.publications

    async def wait_for_topics(self, count: int, timeout: float = 10.0) -> list[Publication]:
        """Until `count` (publication, topic) pairs arrived: on a sharded bus an event of several
        topics may arrive as one publication per shard (`Publication.part`)."""
        async with asyncio.timeout(timeout):
            while sum(len(p.topics) for p in self.publications) < count:
                self._grew.clear()
                await self._grew.wait()
        return self.publications

    @property
    def ids(self) -> list[str]:
        return [p.event.event_id for p in self.publications]

    def topic_ids(self, topic: str) -> list[str]:
        """The ids delivered on `topic`, in delivery order."""
        return [p.event.event_id for p in self.publications if topic in p.seqs]

    def seqs(self, topic: str) -> list[int]:
        return [p.seqs[topic] for p in self.publications if topic in p.seqs]


class Sink:
    """What an outbox writes, decoded; tests wait until enough frames arrived."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self._grew = asyncio.Event()

    async def send(self, text: str) -> None:
        self.frames.append(json.loads(text))
        self._grew.set()

    async def close(self, code: int, reason: str) -> None:
        pass

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.frames) < count:
                self._grew.clear()
                await self._grew.wait()
        return self.frames

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "seq" in f]


def chunk(thread_id: int, content: str) -> Event:
    return CHAT.create(ChatEvent.STREAM_CHUNK, {"thread_id": thread_id, "content": content})


def thread_updated(thread_id: int, agent_id: int) -> Event:
    return CHAT.create(ChatEvent.THREAD_UPDATED, {"id": thread_id, "agent_id": agent_id, "title": "t"})


def agent_updated(agent_id: int) -> Event:
    return CHAT.create(ChatEvent.AGENT_UPDATED, {"id": agent_id, "name": "a", "status": "idle"})
