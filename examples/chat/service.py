"""Messages and streamed runs of the reference application.

A stored message is a committed change: `Messages.store` writes the message and its
`message_created` event in one transaction (wsmigrate's transactional outbox), so it is announced
exactly once even if the bus is down at that moment or the process dies right after the commit.

The streamed reply is the part a half-migrated codebase has not moved yet: it is not stored until
it ends, and its steps are announced through a `ChatAnnouncer`, which the reference app wires to
the legacy call sites (`LegacyCallSites`: `broadcast_to_thread` with the old frames), exactly as
the old code did. The bridge mirrors those broadcasts onto the bus so unified clients see them too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from starlette.concurrency import run_in_threadpool

from examples.chat import legacy_frames as frames
from examples.chat.db import Database, Message, Thread
from examples.chat.declaration import ChatEvent
from examples.chat.legacy_manager import ConnectionManager
from examples.chat.responder import reply_tokens
from examples.chat.schemas import AgentOut, MessageOut, RunAccepted, RunOut, ThreadOut
from wsmigrate import EventCatalog

log = logging.getLogger(__name__)


class ChatAnnouncer(Protocol):
    """How the chat code announces what happened."""

    async def stream_start(self, thread_id: int, run_id: str) -> None: ...

    async def stream_chunk(self, thread_id: int, content: str, run_id: str, index: int) -> None: ...

    async def stream_end(self, thread_id: int, run_id: str) -> None: ...

    async def stream_error(self, thread_id: int, error: str) -> None: ...


class LegacyCallSites:
    """The old application's call sites: legacy frames broadcast to the thread's sockets."""

    def __init__(self, manager: ConnectionManager) -> None:
        self.manager = manager

    async def stream_start(self, thread_id: int, run_id: str) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_start(thread_id, run_id))

    async def stream_chunk(self, thread_id: int, content: str, run_id: str, index: int) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_chunk(thread_id, content, run_id, index))

    async def stream_end(self, thread_id: int, run_id: str) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_end(thread_id, run_id))

    async def stream_error(self, thread_id: int, error: str) -> None:
        await self.manager.broadcast_to_thread(thread_id, frames.stream_error(thread_id, error))


class ThreadNotFoundError(LookupError):
    pass


PUBLISH_WAIT_S = 2.0


class Messages:
    """A thread's messages in the database, each stored with its `message_created` event."""

    def __init__(self, db: Database, catalog: EventCatalog) -> None:
        self.db = db
        self.catalog = catalog

    def store(self, thread_id: int, role: str, content: str,
              before_commit: Callable[[MessageOut], None] | None = None) -> MessageOut:
        """Commit a message and its event together, then wait (bounded) until the event is
        published; if the bus is down the message is stored all the same and announced later.

        `before_commit(message)` runs once the message has its id, before it is visible: state
        that a snapshot reads beside the messages changes first (see `ChatService`)."""
        with self.db.session() as session:
            if session.get(Thread, thread_id) is None:
                raise ThreadNotFoundError(f"Thread {thread_id} not found")
            message = Message(thread_id=thread_id, role=role, content=content)
            session.add(message)
            session.flush()
            out = MessageOut.of(message)
            event = self.catalog.create(ChatEvent.MESSAGE_CREATED, out.model_dump())
            self.db.outbox.stage(session, event)
            if before_commit is not None:
                before_commit(out)
            session.commit()
        self.db.outbox.published_sync([event.event_id], PUBLISH_WAIT_S)  # run in a worker thread
        return out

    def agent_of(self, thread_id: int) -> int | None:
        """The agent a thread belongs to (it never changes), or None if the thread does not exist."""
        with self.db.session() as session:
            thread = session.get(Thread, thread_id)
            return None if thread is None else thread.agent_id

    def thread_snapshot(self, thread_id: int) -> tuple[ThreadOut, AgentOut, list[MessageOut]] | None:
        """A thread, its agent and its messages, read in one transaction."""
        with self.db.session() as session, session.begin():
            thread = session.get(Thread, thread_id)
            if thread is None:
                return None
            return ThreadOut.of(thread), AgentOut.of(thread.agent), [MessageOut.of(m) for m in thread.messages]

    def history(self, thread_id: int) -> list[MessageOut] | None:
        """All messages of a thread in order, or None if the thread does not exist."""
        with self.db.session() as session:
            thread = session.get(Thread, thread_id)
            if thread is None:
                return None
            return [MessageOut.of(m) for m in thread.messages]


MAX_REMEMBERED_RUNS = 1_000


def new_run_id() -> str:
    """Start time first (microseconds, hex), then randomness: ids of a thread's runs sort in the order
    they started, so a view can tell a run older than the one its snapshot shows."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(3)}"


class ChatService(Messages):
    """Stores messages and runs the deterministic responder, announcing each step.

    The latest run of each thread is remembered (bounded: `MAX_REMEMBERED_RUNS` threads) so a view
    loaded mid-run gets the reply so far in its snapshot (`latest_run`). Every step changes that
    state *before* it is announced: a snapshot read after a position holds every chunk at or
    before it, and the chunks' `index` tells the view which later ones it holds too. The state is
    this process's: with several workers, a view served by another worker shows a running reply
    from where it joined (a production app keeps it where every worker reads it).
    """

    def __init__(self, db: Database, catalog: EventCatalog, announcer: ChatAnnouncer, *, chunks: int,
                 delay_ms: float) -> None:
        super().__init__(db, catalog)
        self.announcer = announcer
        self.default_chunks = chunks
        self.default_delay_ms = delay_ms
        self._runs: set[asyncio.Task[None]] = set()
        self._latest: OrderedDict[int, RunOut] = OrderedDict()

    def latest_run(self, thread_id: int) -> RunOut | None:
        """The thread's latest run as it stands now (a copy), or None."""
        run = self._latest.get(thread_id)
        return None if run is None else run.model_copy(deep=True)

    def _remember(self, run: RunOut) -> None:
        self._latest[run.thread_id] = run
        self._latest.move_to_end(run.thread_id)
        while len(self._latest) > MAX_REMEMBERED_RUNS:
            self._latest.popitem(last=False)

    async def post_message(self, thread_id: int, content: str, role: str = "user") -> MessageOut:
        """Store a message with its `message_created` event."""
        return await run_in_threadpool(self.store, thread_id, role, content)

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
        run_id = new_run_id()
        task = asyncio.get_running_loop().create_task(self._run(thread_id, run_id, prompt, count, delay / 1000.0))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return RunAccepted(thread_id=thread_id, run_id=run_id, chunks=count)

    async def _run(self, thread_id: int, run_id: str, prompt: str, chunks: int, delay_s: float) -> None:
        run = RunOut(thread_id=thread_id, run_id=run_id)
        try:
            self._remember(run)
            await self.announcer.stream_start(thread_id, run_id)
            tokens = reply_tokens(prompt, chunks)
            for index, token in enumerate(tokens):
                run.content += token
                run.chunks = index + 1
                await self.announcer.stream_chunk(thread_id, token, run_id, index)
                # Yield to the loop between chunks so a long run never starves other requests.
                await asyncio.sleep(delay_s)
            run.state = "done"
            await self.announcer.stream_end(thread_id, run_id)
            def stored(message: MessageOut) -> None:
                # Before the commit: a snapshot that holds the message holds the run as stored too,
                # so a view never shows the reply twice (as the run and as its message).
                run.state, run.message_id = "stored", message.id

            await run_in_threadpool(self.store, thread_id, "assistant", "".join(tokens), stored)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run on thread %d failed", thread_id)
            run.state = "error"
            await self.announcer.stream_error(thread_id, str(exc))

    async def wait_idle(self, timeout: float) -> None:
        """Wait (bounded) for running streams; cancel what is left."""
        if not self._runs:
            return
        _, pending = await asyncio.wait(set(self._runs), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
