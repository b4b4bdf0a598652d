"""Code blocks of the project's Markdown documents, for the tests that run them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # where it starts in the document, for failure messages


def code_blocks(document: Path) -> list[Block]:
    text = document.read_text(encoding="utf-8")
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)]


def shell_commands(block: Block) -> list[str]:
    """The commands of a `sh` block, comments stripped."""
    commands = []
    for line in block.code.splitlines():
        command = line.split("  #", 1)[0].split(" #", 1)[0].strip() if "#" in line else line.strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands
