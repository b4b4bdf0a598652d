"""REST API of the reference application: agents, threads, messages and streamed runs.

Agent and thread CRUD are the *migrated* half of the app: they announce changes with
`@publish_event(..., session="db")`, through wsmigrate's transactional outbox: the route flushes,
the decorator writes the event into the same transaction and commits both, so a change is never
stored without its event (even while the bus is down: the event follows when it is back). A
second event of the same change is staged with `stage_event`. Messages and runs go through
`ChatService` (see examples/chat/service.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from examples.chat.db import Agent, Thread, bump
from examples.chat.declaration import ChatEvent
from examples.chat.schemas import (
    MAX_ID,
    AgentIn,
    AgentOut,
    AgentPatch,
    MessageIn,
    MessageOut,
    RunAccepted,
    RunIn,
    ThreadIn,
    ThreadOut,
    ThreadPatch,
    ThreadView,
)
from examples.chat.service import ChatService, ThreadNotFoundError
from examples.chat.users import Principal
from wsmigrate import Positions, publish_event, rest_positions, stage_event, topic_positions

if TYPE_CHECKING:
    from examples.chat.app import ChatApp

router = APIRouter(prefix="/api")


def chat_of(request: Request) -> ChatApp:
    return request.app.state.chat  # type: ignore[no-any-return]


def db_session(request: Request) -> Iterator[Session]:
    with chat_of(request).db.session() as session:
        yield session


def chat_service(request: Request) -> ChatService:
    return chat_of(request).service


async def current_user(request: Request) -> Principal | None:
    """The authenticated user; None when auth is off. REST takes a bearer token or the cookie."""
    authenticator = chat_of(request).users
    if not authenticator.enabled:
        return None
    principal = await authenticator.authenticate(request, allow_query=False)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


DB = Annotated[Session, Depends(db_session)]
# Ids are bounded where they enter: the database stores signed 64-bit integers, and an id outside
# them is a 422, not an overflow deep in the driver (a 500).
AgentId = Annotated[int, Path(ge=1, le=MAX_ID)]
ThreadId = Annotated[int, Path(ge=1, le=MAX_ID)]
Chat = Annotated[ChatService, Depends(chat_service)]
User = Annotated[Principal | None, Depends(current_user)]


def _owned(owner_id: int | None, user: Principal | None) -> bool:
    return user is None or owner_id is None or str(owner_id) == user.user_id


def _agent(db: Session, agent_id: int, user: Principal | None) -> Agent:
    """The agent, or 404 when it does not exist or belongs to someone else (no existence leak)."""
    agent = db.get(Agent, agent_id)
    if agent is None or not _owned(agent.owner_id, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Agent {agent_id} not found")
    return agent


def _thread(db: Session, thread_id: int, user: Principal | None) -> Thread:
    thread = db.get(Thread, thread_id)
    if thread is None or not _owned(thread.agent.owner_id, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Thread {thread_id} not found")
    return thread


async def _check_thread(request: Request, thread_id: int, user: Principal | None) -> None:
    verdict = await chat_of(request).ownership.access("thread", thread_id, None if user is None else user.user_id)
    if verdict != "ok":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Thread {thread_id} not found")


# -- agents --------------------------------------------------------------------------------------


# The agents list keeps its body (the legacy dashboard reads it): the position of `agents`, read
# before the list, travels in the Wsmigrate-Positions header.
@router.get("/agents", dependencies=[Depends(topic_positions("agents"))])
def list_agents(db: DB, user: User) -> list[AgentOut]:
    query = select(Agent).order_by(Agent.id)
    if user is not None:
        query = query.where(Agent.owner_id == int(user.user_id))
    return [AgentOut.of(a) for a in db.scalars(query)]


@router.get("/agents/{agent_id}")
def get_agent(agent_id: AgentId, db: DB, user: User) -> AgentOut:
    return AgentOut.of(_agent(db, agent_id, user))


@router.post("/agents", status_code=status.HTTP_201_CREATED)
@publish_event(ChatEvent.AGENT_CREATED, session="db")
def create_agent(body: AgentIn, db: DB, user: User) -> AgentOut:
    agent = Agent(name=body.name, system_prompt=body.system_prompt, status=body.status,
                  owner_id=None if user is None else int(user.user_id))
    db.add(agent)
    db.flush()  # the decorator commits the agent and its event together
    return AgentOut.of(agent)


@router.patch("/agents/{agent_id}")
@publish_event(ChatEvent.AGENT_UPDATED, session="db")
def update_agent(agent_id: AgentId, body: AgentPatch, db: DB, user: User) -> AgentOut:
    agent = _agent(db, agent_id, user)
    old_status = agent.status
    for field, value in body.model_dump(exclude_none=True).items():
        setattr(agent, field, value)
    bump(agent)
    db.flush()
    db.refresh(agent)  # the version the UPDATE wrote
    result = AgentOut.of(agent)
    if result.status != old_status:
        stage_event(db, ChatEvent.AGENT_STATUS_CHANGED, result.model_dump())
    return result


@router.delete("/agents/{agent_id}")
@publish_event(ChatEvent.AGENT_DELETED, session="db")
def delete_agent(agent_id: AgentId, db: DB, user: User) -> AgentOut:
    agent = _agent(db, agent_id, user)
    result = AgentOut.of(agent)
    threads = [ThreadOut.of(thread) for thread in agent.threads]
    for thread in threads:  # its threads go with it (cascade): each is announced, as deleting it alone is
        stage_event(db, ChatEvent.THREAD_DELETED, thread.model_dump())
    db.delete(agent)
    db.flush()
    return result


# -- threads -------------------------------------------------------------------------------------


@router.get("/threads")
def list_threads(db: DB, user: User, agent_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> list[ThreadOut]:
    query = select(Thread).order_by(Thread.id)
    if user is not None:
        query = query.join(Agent).where(Agent.owner_id == int(user.user_id))
    if agent_id is not None:
        query = query.where(Thread.agent_id == agent_id)
    return [ThreadOut.of(t) for t in db.scalars(query)]


@router.get("/threads/{thread_id}")
def get_thread(thread_id: ThreadId, db: DB, user: User) -> ThreadOut:
    return ThreadOut.of(_thread(db, thread_id, user))


@router.post("/threads", status_code=status.HTTP_201_CREATED)
@publish_event(ChatEvent.THREAD_CREATED, session="db")
def create_thread(body: ThreadIn, db: DB, user: User) -> ThreadOut:
    _agent(db, body.agent_id, user)
    thread = Thread(agent_id=body.agent_id, title=body.title)
    db.add(thread)
    db.flush()
    return ThreadOut.of(thread)


@router.patch("/threads/{thread_id}")
@publish_event(ChatEvent.THREAD_UPDATED, session="db")
def update_thread(thread_id: ThreadId, body: ThreadPatch, db: DB, user: User) -> ThreadOut:
    thread = _thread(db, thread_id, user)
    thread.title = body.title
    bump(thread)
    db.flush()
    db.refresh(thread)
    return ThreadOut.of(thread)


@router.delete("/threads/{thread_id}")
@publish_event(ChatEvent.THREAD_DELETED, session="db")
def delete_thread(thread_id: ThreadId, db: DB, user: User) -> ThreadOut:
    thread = _thread(db, thread_id, user)
    result = ThreadOut.of(thread)
    db.delete(thread)
    db.flush()
    return result


# -- messages and runs ---------------------------------------------------------------------------


@router.get("/threads/{thread_id}/messages")
async def list_messages(thread_id: ThreadId, chat: Chat, request: Request, user: User) -> list[MessageOut]:
    await _check_thread(request, thread_id, user)
    history = await run_in_threadpool(chat.history, thread_id)
    if history is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Thread {thread_id} not found")
    return history


@router.get("/threads/{thread_id}/view")
async def thread_view(thread_id: ThreadId, chat: Chat, request: Request, user: User) -> ThreadView:
    """The chat view's initial state: positions first, then the snapshot (docs/protocol.md, "Snapshots")."""
    await _check_thread(request, thread_id, user)
    agent_id = await run_in_threadpool(chat.agent_of, thread_id)  # never changes: safe to read first
    if agent_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Thread {thread_id} not found")
    positions: Positions = await rest_positions([f"thread:{thread_id}", f"agent:{agent_id}"])
    # Messages before the run: a run that ends in between shows as its stored message, never twice.
    snapshot = await run_in_threadpool(chat.thread_snapshot, thread_id)
    if snapshot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Thread {thread_id} not found")
    thread, agent, messages = snapshot
    return ThreadView(thread=thread, agent=agent, messages=messages, run=chat.latest_run(thread_id),
                      positions=positions)


@router.post("/threads/{thread_id}/messages", status_code=status.HTTP_201_CREATED)
async def post_message(thread_id: ThreadId, body: MessageIn, chat: Chat, request: Request, user: User) -> MessageOut:
    await _check_thread(request, thread_id, user)
    try:
        return await chat.post_message(thread_id, body.content, body.role)
    except ThreadNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.post("/threads/{thread_id}/run", status_code=status.HTTP_202_ACCEPTED)
async def run_thread(thread_id: ThreadId, chat: Chat, request: Request, user: User,
                     body: RunIn | None = None) -> RunAccepted:
    await _check_thread(request, thread_id, user)
    body = body or RunIn()
    try:
        return await chat.start_run(thread_id, body.chunks, body.delay_ms)
    except ThreadNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
