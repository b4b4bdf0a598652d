from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from examples.chat.declaration import ChatEvent
from wsmigrate.bridge.errors import FlagsError
from wsmigrate.bridge.flags import FileFlagStore, FlagChange, MemoryFlagStore, apply_change
from wsmigrate.bridge.stages import FlagsDocument, Stage, resolve

MC = ChatEvent.MESSAGE_CREATED


def test_changes_bump_the_revision_and_obey_the_transition_rule() -> None:
    doc = FlagsDocument()
    doc = apply_change(doc, FlagChange(kind="stage", event_type=MC, stage=Stage.SHADOW))
    assert (doc.revision, resolve(doc, MC).stage) == (1, Stage.SHADOW)
    with pytest.raises(FlagsError):
        apply_change(doc, FlagChange(kind="stage", event_type=MC, stage=Stage.COMPLETE))
    doc = apply_change(doc, FlagChange(kind="stage", event_type=MC, stage=Stage.COMPLETE, force=True))
    doc = apply_change(doc, FlagChange(kind="stage", event_type=MC, stage=Stage.OFF))  # back: always allowed
    assert (doc.revision, resolve(doc, MC).stage) == (3, Stage.OFF)


def test_the_cohort_percentage_only_grows_unless_forced() -> None:
    doc = apply_change(FlagsDocument(), FlagChange(kind="stage", event_type=MC, stage=Stage.SHADOW))
    doc = apply_change(doc, FlagChange(kind="percent", event_type=MC, live_percent=20))
    with pytest.raises(FlagsError, match="use force"):
        apply_change(doc, FlagChange(kind="percent", event_type=MC, live_percent=10))
    assert apply_change(doc, FlagChange(kind="percent", event_type=MC, live_percent=10, force=True)
                        ).flags_for(MC).live_percent == 10


def test_kill_switch_forces_every_type_off_and_unkill_restores() -> None:
    doc = apply_change(FlagsDocument(default_stage=Stage.LIVE), FlagChange(kind="kill"))
    assert {resolve(doc, t).stage for t in ChatEvent} == {Stage.OFF}
    doc = apply_change(doc, FlagChange(kind="unkill"))
    assert {resolve(doc, t).stage for t in ChatEvent} == {Stage.LIVE}


async def test_memory_store_audits_who_when_from_to_revision(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    store = MemoryFlagStore(audit_file=audit_file)
    seen: list[int] = []
    store.add_listener(lambda doc: seen.append(doc.revision))
    await store.apply(FlagChange(kind="stage", event_type=MC, stage=Stage.SHADOW), "alice@10.0.0.1")
    entry = store.audit()[-1]
    assert entry["who"] == "alice@10.0.0.1"
    assert entry["event_type"] == "message_created"
    assert entry["from"].startswith("stage=off")
    assert entry["to"].startswith("stage=shadow")
    assert entry["revision"] == 1
    assert "at" in entry
    assert json.loads(audit_file.read_text().splitlines()[-1]) == entry
    assert seen == [0, 1]


async def test_file_store_reloads_an_edit_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "flags.toml"
    path.write_text('kill_switch = false\n')
    store = FileFlagStore(path)
    changed = asyncio.Event()
    store.add_listener(lambda doc: changed.set() if doc.kill_switch else None)
    await store.start()
    try:
        started = time.monotonic()
        path.write_text('kill_switch = true\n')
        await asyncio.wait_for(changed.wait(), 1.0)
        assert time.monotonic() - started < 1.0
        assert store.current().kill_switch
        assert store.current().revision == 1
        assert store.audit()[-1]["who"] == "file:flags.toml"
    finally:
        await store.stop()


def test_an_invalid_file_is_rejected_and_the_last_good_document_stays(tmp_path: Path) -> None:
    path = tmp_path / "flags.toml"
    path.write_text('[types.message_created]\nstage = "shadow"\n')
    store = FileFlagStore(path)
    assert resolve(store.current(), MC).stage is Stage.SHADOW
    path.write_text('[types.message_created]\nstage = "sideways"\n')
    assert not store.reload_if_changed()
    assert resolve(store.current(), MC).stage is Stage.SHADOW
    assert store.last_error is not None
    assert "stage" in store.last_error
    path.write_text('[types.message_created]\nstage = "live"\n')
    assert store.reload_if_changed()
    assert store.last_error is None
    assert resolve(store.current(), MC).stage is Stage.LIVE


async def test_api_changes_are_written_back_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    store = FileFlagStore(path)
    await store.apply(FlagChange(kind="stage", event_type=MC, stage=Stage.SHADOW), "cli")
    reread = FileFlagStore(path)
    assert resolve(reread.current(), MC).stage is Stage.SHADOW
    assert reread.current().revision == 1
    assert not store.reload_if_changed()  # its own write is not mistaken for an edit


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", bytes(range(256)), b'stage = "\xc3\x28"\n'])
def test_the_watcher_survives_any_content_and_reports_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "flags.toml"
    path.write_text('[types.message_created]\nstage = "shadow"\n')
    store = FileFlagStore(path)
    path.write_bytes(content)
    assert not store.reload_if_changed()  # no exception escapes the watcher
    assert store.last_error is not None
    assert resolve(store.current(), MC).stage is Stage.SHADOW
    path.write_text('[types.message_created]\nstage = "live"\n')  # a later edit still applies
    assert store.reload_if_changed()
    assert store.last_error is None
    assert resolve(store.current(), MC).stage is Stage.LIVE


def test_a_file_unreadable_at_start_means_every_type_off_with_the_error_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "flags.toml"
    path.write_bytes(b"\xff\xfe not utf-8")
    with caplog.at_level(logging.ERROR, logger="wsmigrate.bridge.flags"):
        store = FileFlagStore(path)
    assert resolve(store.current(), MC).stage is Stage.OFF
    assert store.last_error is not None
    assert "not UTF-8" in store.last_error
    [line] = [r.getMessage() for r in caplog.records]  # one clear line, naming the file
    assert str(path) in line
    assert "every type is off" in line


def test_a_huge_file_is_refused_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "flags.toml"
    with path.open("wb") as handle:  # sparse: 64 MiB of apparent size
        handle.truncate(64 * 1024 * 1024)
    store = FileFlagStore(path)
    assert resolve(store.current(), MC).stage is Stage.OFF
    assert store.last_error is not None
    assert "at most" in store.last_error
