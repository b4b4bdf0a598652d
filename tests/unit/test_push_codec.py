"""The push an append script publishes for workers that follow topics (`push_fields`), without Redis:
the Lua side joins these fields with the same separator (tests/contract runs it for real)."""

from __future__ import annotations

import pytest

from tests.contract.helpers import INGRESS, chunk
from wsmigrate.unified.redis_scripts import PUSH_SEPARATOR, Keys, decode_publication, push_fields


def push(*fields: str) -> str:
    return PUSH_SEPARATOR.join(fields)


def test_a_push_reads_back_as_the_entry_fields_a_stream_reader_gets() -> None:
    event = chunk(7, "control \x1f characters stay escaped in JSON")
    text = push("1700000000000-3", event.type, '["thread:7"]', "[4]", '["e1"]', "inc", "1700000000000", "",
                INGRESS.to_json(), event.model_dump_json())
    entry_id, fields = push_fields(text)
    assert entry_id == "1700000000000-3"
    assert "x" not in fields  # a whole event: no part marker, as in the stream's entries
    publication = decode_publication(fields)
    assert publication.event.data == event.data
    assert (publication.topics, publication.seqs, publication.epochs) == (("thread:7",), {"thread:7": 4},
                                                                          {"thread:7": "e1"})
    assert publication.part is None
    assert publication.ingress == INGRESS


def test_a_part_of_a_split_event_keeps_its_index() -> None:
    event = chunk(7, "part")
    _, fields = push_fields(push("1-0", event.type, '["thread:7"]', "[1]", '["e"]', "i", "1", "1", INGRESS.to_json(),
                                 event.model_dump_json()))
    assert decode_publication(fields).part == 1


@pytest.mark.parametrize("text", ["", "1-0", push("1-0", "a", "b"), "no separators at all"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a bus push"):
        push_fields(text)


def test_channels_carry_the_shard_tag_so_a_cluster_keeps_them_in_the_scripts_slot() -> None:
    assert Keys("P", 3).topic_channel("thread:7") == "P:{s3}:ch:t:thread:7"
    assert Keys("P", 3).type_channel("stream_chunk") == "P:{s3}:ch:y:stream_chunk"
    assert Keys("P").beat_channel("w1") == "P:ch:beat:w1"
    assert Keys("P", 3).topic_channel("").startswith(Keys("P", 3).channels)
