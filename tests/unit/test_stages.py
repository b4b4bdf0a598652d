from __future__ import annotations

import pytest

from examples.chat.declaration import ChatEvent
from tests.support import CHAT
from wsmigrate.bridge.errors import FlagsError
from wsmigrate.bridge.stages import (
    FlagsDocument,
    Stage,
    TypeFlags,
    check_transition,
    cohort_bucket,
    in_live_cohort,
    is_compared,
    parse_document,
    resolve,
    serving_path,
)


@pytest.mark.parametrize(
    ("stage", "path", "compared"),
    [(Stage.OFF, "legacy", False), (Stage.SHADOW, "legacy", True), (Stage.LIVE, "unified", True),
     (Stage.COMPLETE, "unified", False)],
)
def test_the_stage_table(stage: Stage, path: str, compared: bool) -> None:
    assert serving_path(stage) == path
    assert is_compared(stage) is compared


def test_a_live_cohort_connection_in_shadow_is_served_live() -> None:
    assert serving_path(Stage.SHADOW, in_live_cohort=True) == "unified"
    assert is_compared(Stage.SHADOW, in_live_cohort=True)
    assert serving_path(Stage.OFF, in_live_cohort=True) == "legacy"  # cohorts only act within shadow


def test_cohorts_are_sticky_and_raising_the_percentage_never_moves_anyone_back() -> None:
    identities = [f"user-{i}" for i in range(2000)]
    assert [cohort_bucket(i) for i in identities] == [cohort_bucket(i) for i in identities]
    previous: set[str] = set()
    for percent in (0, 1, 5, 10, 25, 50, 75, 99, 100):
        live = {i for i in identities if in_live_cohort(cohort_bucket(i), percent)}
        assert previous <= live
        assert abs(len(live) / len(identities) - percent / 100) < 0.05
        previous = live
    assert len(previous) == len(identities)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [(Stage.OFF, Stage.SHADOW, True), (Stage.SHADOW, Stage.LIVE, True), (Stage.LIVE, Stage.COMPLETE, True),
     (Stage.OFF, Stage.LIVE, False), (Stage.OFF, Stage.COMPLETE, False), (Stage.SHADOW, Stage.COMPLETE, False),
     (Stage.COMPLETE, Stage.OFF, True), (Stage.LIVE, Stage.SHADOW, True), (Stage.SHADOW, Stage.SHADOW, True)],
)
def test_forward_moves_skip_no_stage_unless_forced(current: Stage, target: Stage, allowed: bool) -> None:
    if allowed:
        check_transition(current, target, force=False)
    else:
        with pytest.raises(FlagsError, match="skips"):
            check_transition(current, target, force=False)
    check_transition(current, target, force=True)


def test_precedence_kill_switch_pin_cohort_type_default() -> None:
    t = ChatEvent.MESSAGE_CREATED
    doc = FlagsDocument(revision=4, default_stage=Stage.SHADOW,
                        types={t: TypeFlags(stage=Stage.SHADOW, live_percent=30, pin=Stage.COMPLETE)})
    assert resolve(doc, t).stage is Stage.COMPLETE
    assert resolve(doc, t).source == "pin"
    assert resolve(doc.model_copy(update={"kill_switch": True}), t).stage is Stage.OFF
    unpinned = doc.model_copy(update={"types": {t: TypeFlags(stage=Stage.SHADOW, live_percent=30)}})
    assert (resolve(unpinned, t).source, resolve(unpinned, t).live_percent) == ("cohort", 30)
    typed = doc.model_copy(update={"types": {t: TypeFlags(stage=Stage.LIVE)}})
    assert (resolve(typed, t).stage, resolve(typed, t).source) == (Stage.LIVE, "type")
    assert (resolve(doc, ChatEvent.STREAM_END).stage, resolve(doc, ChatEvent.STREAM_END).source) == (
        Stage.SHADOW, "default")
    assert resolve(doc, t).revision == 4


def test_documents_parse_from_toml_and_json_and_bad_ones_are_rejected_clearly() -> None:
    toml = 'revision = 2\nkill_switch = false\n[types.message_created]\nstage = "shadow"\nlive_percent = 10\n'
    doc = parse_document(toml, fmt="toml")
    assert doc.flags_for(ChatEvent.MESSAGE_CREATED).live_percent == 10
    assert parse_document(doc.to_json(), fmt="json") == doc
    with pytest.raises(FlagsError, match="not valid TOML"):
        parse_document("revision = = 1", fmt="toml")
    with pytest.raises(FlagsError, match="unknown event types: nope; declared: agent_created"):
        parse_document('[types.nope]\nstage = "off"\n', fmt="toml", event_types=CHAT.names)
    # without a catalogue (a document read by a tool that knows none) any type name is kept
    assert "nope" in parse_document('[types.nope]\nstage = "off"\n', fmt="toml").types
    with pytest.raises(FlagsError, match="stage"):
        parse_document('[types.message_created]\nstage = "sideways"\n', fmt="toml")
    with pytest.raises(FlagsError, match="live_percent"):
        parse_document('[types.message_created]\nlive_percent = 101\n', fmt="toml")
