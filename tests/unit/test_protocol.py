from __future__ import annotations

import json

import pytest

from wsmigrate.unified.protocol import (
    MAX_FRAME_BYTES,
    CloseCode,
    ErrorCode,
    PingRequest,
    ProtocolError,
    SubscribeRequest,
    UnsubscribeRequest,
    parse_client_frame,
)


def test_the_three_client_frames_parse() -> None:
    sub = parse_client_frame('{"type":"subscribe","topics":["thread:45","agents"],"message_id":"c1"}')
    assert isinstance(sub, SubscribeRequest)
    assert sub.topics == ["thread:45", "agents"]
    assert sub.message_id == "c1"
    unsub = parse_client_frame('{"type":"unsubscribe","topics":["thread:12"],"message_id":"c2"}')
    assert isinstance(unsub, UnsubscribeRequest)
    ping = parse_client_frame('{"type":"ping"}')
    assert isinstance(ping, PingRequest)
    assert ping.message_id is None


def test_since_positions_parse() -> None:
    sub = parse_client_frame(json.dumps(
        {"type": "subscribe", "topics": ["thread:45"], "since": {"thread:45": {"epoch": "e1", "seq": 130}}}
    ))
    assert isinstance(sub, SubscribeRequest)
    assert sub.since["thread:45"].seq == 130


@pytest.mark.parametrize(
    "text",
    [
        "{", "[]", "null", '"subscribe"', '{"type":"unknown"}', '{"topics":["agents"]}',
        '{"type":"subscribe","topics":"agents"}', '{"type":"subscribe","topics":[1]}',
        '{"type":"ping","extra":1}', '{"type":"subscribe","topics":[],"since":{"a":{"seq":-1,"epoch":"e"}}}',
        "x" * (MAX_FRAME_BYTES + 1), "[" * 100 + "]" * 100,
    ],
)
def test_bad_frames_raise_bad_message(text: str) -> None:
    with pytest.raises(ProtocolError) as error:
        parse_client_frame(text)
    assert error.value.code is ErrorCode.BAD_MESSAGE
    assert error.value.message


def test_bad_message_echoes_a_readable_message_id() -> None:
    with pytest.raises(ProtocolError) as error:
        parse_client_frame('{"type":"subscribe","message_id":"m7"}')
    assert error.value.message_id == "m7"


def test_close_codes_are_named() -> None:
    assert CloseCode.TRY_AGAIN_LATER == 1013
    assert CloseCode.POLICY_VIOLATION == 1008
    assert CloseCode.HEARTBEAT_TIMEOUT == 4408
    assert CloseCode.UNAUTHORIZED == 4401
