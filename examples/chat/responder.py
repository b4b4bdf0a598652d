"""A deterministic built-in responder: the stand-in for a model, with no network and no weights.

The reply depends only on the prompt and the requested length, so tests can compute the exact
text a streamed run must produce and compare it with what clients assembled from the chunks.
"""

from __future__ import annotations

import hashlib

_WORDS = (
    "event", "socket", "topic", "stream", "bridge", "legacy", "unified", "order", "replay", "epoch",
    "shadow", "live", "cohort", "flag", "counter", "probe", "client", "server", "frame", "message",
    "agent", "thread", "deliver", "exactly", "once", "migrate", "rollout", "stage", "ledger", "bus",
)


def reply_tokens(prompt: str, chunks: int) -> list[str]:
    """`chunks` tokens answering `prompt`; each token is a word followed by a space or a full stop."""
    seed = hashlib.sha256(prompt.encode("utf-8")).digest()
    tokens: list[str] = []
    for index in range(chunks):
        word = _WORDS[(seed[index % len(seed)] + index * 7) % len(_WORDS)]
        last = index == chunks - 1
        tokens.append(f"{word}." if last else f"{word} ")
    return tokens


def reply_text(prompt: str, chunks: int) -> str:
    return "".join(reply_tokens(prompt, chunks))
