"""`DecodedEntries` (unified/replay_cache.py): a shared decode is exactly a fresh decode, an entry
whose fields changed (a Redis that lost or rolled back its data) is decoded afresh, and the cache
stays within its bounds."""

from __future__ import annotations

import json

from wsmigrate.unified.events import Event
from wsmigrate.unified.publication import Ingress, Publication
from wsmigrate.unified.redis_scripts import (
    F_EPOCHS,
    F_EVENT,
    F_META,
    F_SEQS,
    F_TOPICS,
    F_TS,
    F_TYPE,
    decode_publication,
    encode_event,
)
from wsmigrate.unified.replay_cache import DecodedEntries

TOPIC = "room:7"


def stored(seq: int, text: str, *, topics: tuple[str, ...] = (TOPIC,), epoch: str = "e1") -> dict[str, str]:
    """An entry's fields as the append script stores them."""
    event = Event(type="note_added", topic=topics[0], data={"id": seq, "text": text}, event_id=f"{seq}-{text}", ts=1)
    return {F_EVENT: encode_event(event), F_META: Ingress(origin="bus").to_json(), F_TYPE: "note_added",
            F_TOPICS: json.dumps(list(topics)), F_SEQS: json.dumps([seq] * len(topics)),
            F_EPOCHS: json.dumps([epoch] * len(topics)), F_TS: "1"}


def same(a: Publication, b: Publication) -> bool:
    return (a.event == b.event and a.topics == b.topics and a.seqs == b.seqs and a.epochs == b.epochs
            and a.ingress == b.ingress and all(a.frame(t) == b.frame(t) for t in a.topics))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_shared_decode_is_a_fresh_decode_with_its_own_ingress_time() -> None:
    cache = DecodedEntries()
    for fields in (stored(1, "a"), stored(2, "b", topics=(TOPIC, "room:8"))):
        first = cache.publication(TOPIC, f"{json.loads(fields[F_SEQS])[0]}-0", fields)
        again = cache.publication(TOPIC, f"{json.loads(fields[F_SEQS])[0]}-0", dict(fields))
        assert same(first, decode_publication(fields))
        assert same(again, decode_publication(fields))
        assert again is not first  # each replay its own publication: delivery latency counts from it
    assert (cache.hits, cache.misses) == (2, 2)


def test_an_entry_id_that_now_holds_another_event_is_decoded_afresh() -> None:
    """A Redis restored from an older snapshot hands out seq 3 again, for another event."""
    cache = DecodedEntries()
    before = cache.publication(TOPIC, "3-0", stored(3, "before the rollback"))
    after = cache.publication(TOPIC, "3-0", stored(3, "after the rollback"))
    assert before.event.data["text"] == "before the rollback"
    assert after.event.data["text"] == "after the rollback"
    other_epoch = cache.publication(TOPIC, "3-0", stored(3, "after the rollback", epoch="e2"))
    assert other_epoch.epochs == {TOPIC: "e2"}
    assert cache.hits == 0


def test_the_cache_is_bounded_by_size_and_by_idle_time() -> None:
    clock = Clock()
    cache = DecodedEntries(capacity=3, idle_s=10, clock=clock)
    for seq in range(1, 6):
        cache.publication(TOPIC, f"{seq}-0", stored(seq, "x"))
    assert len(cache) == 3
    assert cache.evictions == 2
    cache.publication(TOPIC, "5-0", stored(5, "x"))  # still there
    assert cache.hits == 1
    clock.now = 10.5
    cache.publication(TOPIC, "6-0", stored(6, "x"))  # the others sat unused for 10 s: dropped first
    assert len(cache) == 1
    assert cache.evictions == 5


def test_capacity_zero_decodes_every_time() -> None:
    cache = DecodedEntries(capacity=0)
    fields = stored(1, "a")
    assert same(cache.publication(TOPIC, "1-0", fields), cache.publication(TOPIC, "1-0", fields))
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 0)
