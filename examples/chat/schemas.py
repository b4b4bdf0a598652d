"""Request and response models of the reference application's REST API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from examples.chat.db import Agent, Message, Thread, iso_utc
from wsmigrate import Positions

AgentStatus = Literal["idle", "running", "error", "offline"]
MAX_ID = 2**63 - 1  # ids are signed 64-bit integers in the database


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    system_prompt: str = Field("", max_length=20_000)
    status: AgentStatus = "idle"


class AgentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    system_prompt: str | None = Field(None, max_length=20_000)
    status: AgentStatus | None = None


class AgentOut(BaseModel):
    id: int
    agent_id: int
    name: str
    system_prompt: str
    status: str
    owner_id: int | None
    created_at: str
    updated_at: str
    version: int  # +1 on every change: a view skips an event older than what its snapshot holds

    @classmethod
    def of(cls, agent: Agent) -> AgentOut:
        return cls(
            id=agent.id, agent_id=agent.id, name=agent.name, system_prompt=agent.system_prompt,
            status=agent.status, owner_id=agent.owner_id,
            created_at=iso_utc(agent.created_at), updated_at=iso_utc(agent.updated_at), version=agent.version,
        )


class ThreadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: int = Field(ge=1, le=MAX_ID)
    title: str = Field("", max_length=500)


class ThreadPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=500)


class ThreadOut(BaseModel):
    id: int
    thread_id: int
    agent_id: int
    title: str
    created_at: str
    updated_at: str
    version: int  # +1 on every change

    @classmethod
    def of(cls, thread: Thread) -> ThreadOut:
        return cls(
            id=thread.id, thread_id=thread.id, agent_id=thread.agent_id, title=thread.title,
            created_at=iso_utc(thread.created_at), updated_at=iso_utc(thread.updated_at), version=thread.version,
        )


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=100_000)
    role: Literal["user", "assistant", "system"] = "user"


class MessageOut(BaseModel):
    id: int
    thread_id: int
    role: str
    content: str
    timestamp: str

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls(
            id=message.id, thread_id=message.thread_id, role=message.role, content=message.content,
            timestamp=iso_utc(message.timestamp),
        )


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunks: int | None = Field(None, ge=1, le=100_000)
    delay_ms: float | None = Field(None, ge=0, le=10_000)


class RunAccepted(BaseModel):
    thread_id: int
    run_id: str
    chunks: int


class RunOut(BaseModel):
    """A streamed run as it stands: the reply so far; `chunks` tokens of it were announced."""

    thread_id: int
    run_id: str
    content: str = ""
    chunks: int = 0
    state: Literal["streaming", "done", "stored", "error"] = "streaming"
    message_id: int | None = None  # the stored reply, once `stored`


class ThreadView(BaseModel):
    """What the chat view loads: the thread, its agent, its messages and its latest run, with the
    positions of `thread:{id}` and `agent:{agent_id}` read before any of it (subscribe `since` them)."""

    thread: ThreadOut
    agent: AgentOut
    messages: list[MessageOut]
    run: RunOut | None
    positions: Positions
