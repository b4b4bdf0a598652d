"""Messages and streamed runs of the reference application.

This is the part of the sample app that a half-migrated codebase has not moved yet: it announces
what happened through a `ChatAnnouncer`, which the reference app wires to the legacy call sites
(`LegacyCallSites`: `broadcast_to_thread` with the old frames), exactly as the old code did. The
bridge mirrors those broadcasts onto the bus so unified clients see them too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Protocol

from starlette.concurrency import run_in_threadpool

from examples.chat import legacy_frames as frames
from examples.chat.db import Database, Message, Thread
from examples.chat.legacy_manager import ConnectionManager
from examples.chat.responder import reply_tokens
from examples.chat.schemas import MessageOut, RunAccepted

log = logging.getLogger(__name__)


class ChatAnnouncer(Protocol):
    """How the chat code announces what happened."""

    async def message_created(self, message: MessageOut) -> None: ...

    async def stream_start(self, thread_id: int) -> None: ...

    async def stream_chunk(self, thread_id: int, content: str) -> None: ...

    async def stream_end(self, thread_id: int) -> None: ...

    async def stream_error(self, thread_id: int, error: str) -> None: ...


class LegacyCallSites:
    """The old application's call sites: legacy frames broadcast to the thread's sockets."""

    def __init__(self, manager: ConnectionManager) -> None:
        self.manager = manager

    async def message_created(self, message: MessageOut) -> None:
        await self.manager.broadcast_to_thread(message.thread_id, frames.thread_message(message.model_dump()))

    async def stream_start(self, thread_id: int) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_start(thread_id))

    async def stream_chunk(self, thread_id: int, content: str) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_chunk(thread_id, content))

    async def stream_end(self, thread_id: int) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_end(thread_id))

    async def stream_error(self, thread_id: int, error: str) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_error(thread_id, error))


class ThreadNotFoundError(LookupError):
    pass


class Messages:
    """A thread's messages in the database: stored and read, never announced (callers announce)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, thread_id: int, role: str, content: str) -> MessageOut:
        """Commit a message without announcing it (the caller announces)."""
        with self.db.session() as session:
            if session.get(Thread, thread_id) is None:
                raise ThreadNotFoundError(f"Thread {thread_id} not found")
            message = Message(thread_id=thread_id, role=role, content=content)
            session.add(message)
            session.commit()
            return MessageOut.of(message)

    def history(self, thread_id: int) -> list[MessageOut] | None:
        """All messages of a thread in order, or None if the thread does not exist."""
        with self.db.session() as session:
            thread = session.get(Thread, thread_id)
            if thread is None:
                return None
            return [MessageOut.of(m) for m in thread.messages]


class ChatService(Messages):
    """Stores messages and runs the deterministic responder, announcing each step."""

    def __init__(self, db: Database, announcer: ChatAnnouncer, *, chunks: int, delay_ms: float) -> None:
        super().__init__(db)
        self.announcer = announcer
        self.default_chunks = chunks
        self.default_delay_ms = delay_ms
        self._runs: set[asyncio.Task[None]] = set()

    async def post_message(self, thread_id: int, content: str, role: str = "user") -> MessageOut:
        """Store a message (after commit) and announce `message_created`."""
        message = await run_in_threadpool(self.store, thread_id, role, content)
        await self.announcer.message_created(message)
        return message

    def _prompt(self, thread_id: int) -> str:
        history = self.history(thread_id)
        if history is None:
            raise ThreadNotFoundError(f"Thread {thread_id} not found")
        prompts = [m.content for m in history if m.role == "user"]
        return prompts[-1] if prompts else ""

    async def start_run(self, thread_id: int, chunks: int | None = None, delay_ms: float | None = None) -> RunAccepted:
        """Check the thread and start streaming a reply in the background; returns at once."""
        prompt = await run_in_threadpool(self._prompt, thread_id)
        count = chunks or self.default_chunks
        delay = self.default_delay_ms if delay_ms is None else delay_ms
        run_id = uuid.uuid4().hex[:12]
        task = asyncio.get_running_loop().create_task(self._run(thread_id, prompt, count, delay / 1000.0))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return RunAccepted(thread_id=thread_id, run_id=run_id, chunks=count)

    async def _run(self, thread_id: int, prompt: str, chunks: int, delay_s: float) -> None:
        try:
            await self.announcer.stream_start(thread_id)
            tokens = reply_tokens(prompt, chunks)
            for token in tokens:
                await self.announcer.stream_chunk(thread_id, token)
                # Yield to the loop between chunks so a long run never starves other requests.
                await asyncio.sleep(delay_s)
            await self.announcer.stream_end(thread_id)
            await self.post_message(thread_id, "".join(tokens), role="assistant")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run on thread %d failed", thread_id)
            await self.announcer.stream_error(thread_id, str(exc))

    async def wait_idle(self, timeout: float) -> None:
        """Wait (bounded) for running streams; cancel what is left."""
        if not self._runs:
            return
        _, pending = await asyncio.wait(set(self._runs), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
