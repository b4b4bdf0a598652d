"""A topic follower's channel bookkeeping (`unified.redis_channels`) without Redis."""

from __future__ import annotations

from wsmigrate.unified.redis_channels import SUBSCRIBE_BATCH, ChannelSubscriptions, PubSubCommands, batches


def test_changes_are_sent_as_a_diff_and_a_change_undone_before_it_never_leaves() -> None:
    channels = ChannelSubscriptions(always=["beat"])
    channels.want("t:1", True)
    channels.want("t:2", True)
    channels.want("t:2", False)  # wanted and unwanted between two diffs: never sent
    channels.reset()  # the first connection: `always` channels too
    assert channels.diff() == (["beat", "t:1"], [])
    assert channels.diff() == ([], [])
    channels.want("t:1", False)
    channels.want("t:3", True)
    assert channels.diff() == (["t:3"], ["t:1"])
    assert channels.asked == {"beat", "t:3"}


def test_a_new_connection_is_sent_everything_wanted_and_owes_no_old_confirmation() -> None:
    channels = ChannelSubscriptions()
    channels.want("t:1", True)
    channels.reset()
    channels.diff()
    assert channels.confirming() == {"t:1"}
    channels.reset()
    assert channels.confirming() == set()
    assert channels.asked == set()
    assert channels.diff() == (["t:1"], [])


def test_a_channel_is_confirmed_after_its_last_subscribe_is_answered() -> None:
    channels = ChannelSubscriptions()
    channels.reset()
    channels.want("t:1", True)
    channels.diff()
    channels.want("t:1", False)
    channels.diff()
    channels.want("t:1", True)
    channels.diff()  # subscribe, unsubscribe, subscribe: two subscribe answers due
    assert not channels.confirmed("t:1")
    assert channels.still_confirming(["t:1"])
    assert not channels.subscribed("t:1")
    assert channels.unsubscribed("t:1")  # ours
    assert channels.subscribed("t:1")
    assert channels.confirmed("t:1")
    assert not channels.still_confirming(["t:1"])


def test_an_unsubscribe_nobody_asked_for_is_told_apart() -> None:
    channels = ChannelSubscriptions()
    channels.reset()
    channels.want("t:1", True)
    channels.diff()
    channels.subscribed("t:1")
    assert not channels.unsubscribed("t:1")  # Redis dropped it: its slot moved


def test_type_channels_are_replaced_as_a_whole() -> None:
    channels = ChannelSubscriptions()
    channels.reset()
    channels.want_types({"y:a", "y:b"})
    assert channels.diff() == (["y:a", "y:b"], [])
    channels.want_types({"y:b", "y:c"})
    assert channels.diff() == (["y:c"], ["y:a"])
    channels.want("t:1", True)
    channels.want_types(set())
    assert channels.diff() == (["t:1"], ["y:b", "y:c"])


def test_commands_of_plain_and_shard_channels_and_batches() -> None:
    plain, sharded = PubSubCommands(False), PubSubCommands(True)
    assert (plain.subscribe, plain.message, plain.unsubscribed) == ("SUBSCRIBE", "message", "unsubscribe")
    assert (sharded.subscribe, sharded.message, sharded.unsubscribed) == ("SSUBSCRIBE", "smessage", "sunsubscribe")
    names = [f"t:{i}" for i in range(2 * SUBSCRIBE_BATCH + 5)]
    assert [len(b) for b in batches(names)] == [SUBSCRIBE_BATCH, SUBSCRIBE_BATCH, 5]
    assert [n for b in batches(names) for n in b] == names
