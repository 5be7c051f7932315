"""The pilot's final record: the one line a factory reads from a glidein's output, whatever the site.

The record is one JSON object, printed as the last line of standard output after the
marker ``UPDRAFT_PILOT_RESULT`` and written to ``pilot-result.json`` in the work directory.
The pilot writes it (``write_result``), the factory parses it (``parse_result``).
Standard library only (Python >= 3.9): the pilot bundles it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

RESULT_MARKER = "UPDRAFT_PILOT_RESULT"


def write_result(record: dict[str, Any], path: Path, stream: TextIO = sys.stdout) -> None:
    text = json.dumps(record, sort_keys=True, default=str)
    try:
        path.write_text(text + "\n")
    except OSError:
        pass
    stream.write(f"{RESULT_MARKER} {text}\n")
    stream.flush()


def parse_result(output: str) -> Optional[dict[str, Any]]:
    """The final record from a glidein's standard output (the factory's side)."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER + " "):
            try:
                return json.loads(line[len(RESULT_MARKER) + 1 :])
            except ValueError:
                return None
    return None
