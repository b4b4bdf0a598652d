"""Pre-built frames: the bytes must be exactly what a WebSocket client decodes as one text message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from wsmigrate.unified.wire import EncodedFrame, text_frame


def decode(data: bytes) -> list[Frame]:
    """Parse server-to-client frames with websockets' own (client-side) parser."""
    frames: list[Frame] = []
    view = memoryview(data)

    def read_exact(n: int):  # the generator protocol of Frame.parse
        nonlocal view
        chunk, view = bytes(view[:n]), view[n:]
        assert len(chunk) == n, "truncated frame"
        return chunk
        yield  # pragma: no cover - makes this a generator

    while view:
        parser = Frame.parse(read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_every_length_encoding_decodes_to_the_same_text(size: int) -> None:
    text = "x" * size
    (frame,) = decode(text_frame(text.encode()))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert not frame.rsv1
    assert frame.data.decode() == text


@given(st.lists(st.text(max_size=300), min_size=1, max_size=8))
def test_frames_written_back_to_back_decode_in_order(texts: list[str]) -> None:
    data = b"".join(EncodedFrame(t).wire for t in texts)
    assert [f.data.decode() for f in decode(data)] == texts


def test_an_encoded_frame_keeps_its_text_and_shares_its_bytes() -> None:
    frame = EncodedFrame('{"type":"pong"}')
    assert frame.text == '{"type":"pong"}'
    assert frame.wire is frame.wire
    assert decode(frame.wire)[0].data == b'{"type":"pong"}'
