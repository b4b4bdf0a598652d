"""Random and malformed frames at both endpoints, while a reference client keeps receiving.

For every generated batch of hostile frames, on a unified socket and on a legacy socket: the
server stays up, a well-formed request sent after the junk still gets its answer, and the
reference client (subscribed elsewhere on the same server) receives every event in order with no
gap in `seq`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support import RunningServer

TIMEOUT = 10.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
near_valid = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "unsubscribe", "ping", "pong", "subscribe_thread", "send_message",
                              "dance", ""])},
    optional={
        "topics": st.one_of(st.lists(st.sampled_from(["agents", "system", "thread:1", "agent:1", "thread:x",
                                                      "thread:99999", "", "agent:0"]), max_size=5), json_values),
        "since": st.one_of(json_values, st.dictionaries(st.sampled_from(["agents", "thread:1"]),
                                                        st.fixed_dictionaries({"epoch": st.text(max_size=8),
                                                                               "seq": st.integers()}))),
        "message_id": st.one_of(st.text(max_size=200), st.integers(), json_values),
        "thread_id": st.one_of(st.integers(), st.text(max_size=5)),
        "content": st.one_of(st.text(max_size=50), st.integers()),
        "timestamp": json_values,
    },
)
frames = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    near_valid.map(json.dumps),
    st.integers(1, 200).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 200).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.just("x" * (64 * 1024 + 1)),
)


@dataclass
class FuzzWorld:
    server: RunningServer
    thread_id: int
    reference: ClientConnection
    reference_topic: str
    last_seq: int
    markers: Iterator[int]


@pytest.fixture
def world(server_factory: Any) -> Iterator[FuzzWorld]:
    server: RunningServer = server_factory(max_bad_frames=100_000, subscribe_burst=100_000)
    with httpx.Client(base_url=server.http, timeout=TIMEOUT) as http:
        agent = http.post("/api/agents", json={"name": "fuzz"}).json()
        target = http.post("/api/threads", json={"agent_id": agent["id"]}).json()
        watched = http.post("/api/threads", json={"agent_id": agent["id"]}).json()
    with connect(server.ws_url(), open_timeout=TIMEOUT) as reference:
        topic = f"thread:{watched['id']}"
        reference.send(json.dumps({"type": "subscribe", "topics": [topic]}))
        ack = json.loads(reference.recv(TIMEOUT))
        yield FuzzWorld(server, target["id"], reference, topic, ack["positions"][topic]["seq"], itertools.count())


def answer(ws: ClientConnection, request: dict[str, Any], matches: Any) -> dict[str, Any]:
    """Send a well-formed request and read until its answer arrives (bounded)."""
    ws.send(json.dumps(request))
    while True:
        frame = json.loads(ws.recv(TIMEOUT))
        if matches(frame):
            return frame


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(frames, min_size=1, max_size=8))
def test_hostile_frames_never_hurt_the_server_or_other_clients(world: FuzzWorld, batch: list[Any]) -> None:
    server = world.server
    marker = next(world.markers)
    endpoints = [server.ws_url(), f"{server.ws_url()}?thread_id={world.thread_id}"]
    for url in endpoints:
        with connect(url, open_timeout=TIMEOUT, max_size=None) as ws:
            for frame in batch:
                ws.send(frame)
            try:
                if "thread_id" in url:
                    answer(ws, {"type": "ping", "timestamp": f"m{marker}"},
                           lambda f: f == {"type": "pong", "timestamp": f"m{marker}"})
                else:
                    answer(ws, {"type": "ping", "message_id": f"m{marker}"}, lambda f: f == {
                        "type": "pong", "message_id": f"m{marker}"})
            except ConnectionClosed as closed:  # only the documented limits may close a socket
                pytest.fail(f"socket closed by junk: {closed!r} after {batch!r}")
    with httpx.Client(base_url=server.http, timeout=TIMEOUT) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        thread_id = int(world.reference_topic.split(":")[1])
        http.post(f"/api/threads/{thread_id}/messages", json={"content": f"marker {marker}"}).raise_for_status()
    while True:  # the reference client misses nothing, in order
        frame = json.loads(world.reference.recv(TIMEOUT))
        assert frame["seq"] == world.last_seq + 1
        world.last_seq = frame["seq"]
        if frame["data"].get("content") == f"marker {marker}":
            break
