"""The fenced blocks of README.md and docs/*.md, as the docs test reads them.

A block's info string says what the test does with it:

- ```` ```sh runnable ````: every command line is run, in order, and must exit 0;
- ```` ```python runnable ````: the block is run as one Python script;
- ```` ```text file=NAME ```` (any language): the block is written to NAME first, so the commands
  after it find the file the reader was told to write;
- ```` ```sh skip="why" ````: a shell block the test cannot run here (a pool in the foreground,
  systemd on three hosts, a remote site), with the reason. Every shell block is one or the other.

Markdown renderers read only the first word (the language), so the marks are invisible to readers.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(.*)$")
SHELLS = {"sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    language: str
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def runnable(self) -> bool:
        return "runnable" in self.options

    @property
    def file_name(self) -> str | None:
        return self.options.get("file")

    @property
    def is_shell(self) -> bool:
        return self.language in SHELLS

    def commands(self) -> list[tuple[int, str]]:
        """Each command line with its line number; comment lines skipped, continuations joined."""
        out: list[tuple[int, str]] = []
        pending, start = "", 0
        for offset, line in enumerate(self.text.splitlines(), start=self.line + 1):
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if not pending:
                start = offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            out.append((start, pending + line))
            pending = ""
        if pending:
            out.append((start, pending))
        return out


def parse_info(info: str) -> tuple[str, dict[str, str]]:
    words = shlex.split(info)
    if not words:
        return "", {}
    options: dict[str, str] = {}
    for word in words[1:]:
        name, _, value = word.partition("=")
        options[name] = value
    return words[0], options


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    out: list[Block] = []
    opening: tuple[int, str, dict[str, str]] | None = None
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if opening is None:
            if fence:
                language, options = parse_info(fence.group(1).strip())
                opening, body = (number, language, options), []
            continue
        if fence and not fence.group(1).strip():
            start, language, options = opening
            out.append(Block(path, start, language, options, "\n".join(body) + "\n"))
            opening = None
            continue
        body.append(line)
    if opening is not None:
        raise ValueError(f"{path.name}:{opening[0]}: a fenced block that never closes")
    return out
