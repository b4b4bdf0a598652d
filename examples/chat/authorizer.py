"""Access rule of the reference application's topics: a topic is served only if its resource
exists and belongs to the subscriber (`not_found` / `forbidden` otherwise); collection topics are
open. One subscribe frame is answered with one batched ownership look-up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from examples.chat.ownership import Kind, Ownership
from wsmigrate import Topic, Verdict

_PARAM_KIND: dict[str, Kind] = {"agent_id": "agent", "thread_id": "thread"}
_VERDICT: dict[str, Verdict] = {"ok": "allow", "not_found": "not_found", "forbidden": "forbidden"}


class ChatAuthorizer:
    def __init__(self, ownership: Ownership) -> None:
        self.ownership = ownership

    async def authorize(self, user_id: str | None, topics: Sequence[Topic]) -> Mapping[str, Verdict]:
        verdicts: dict[str, Verdict] = {}
        resources: dict[str, tuple[Kind, int]] = {}
        for topic in topics:
            name, value = next(iter(topic.params.items()), (None, None))
            kind = _PARAM_KIND.get(name or "")
            if kind is None or not isinstance(value, int):
                verdicts[topic.name] = "allow"  # `agents`, `system`: everyone's, filtered by audience
            else:
                resources[topic.name] = (kind, value)
        if resources:
            access = await self.ownership.access_many(list(resources.values()), user_id)
            verdicts.update({name: _VERDICT[access[key]] for name, key in resources.items()})
        return verdicts


