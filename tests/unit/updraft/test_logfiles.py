"""Log files and logrotate: a rotated log is reopened on SIGUSR1 (and when the file was moved)."""

from __future__ import annotations

import logging
from pathlib import Path

from updraft.core.logfiles import LogFile, reopen_log_files


def test_a_rotated_log_is_reopened_and_new_lines_go_to_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "service.log"
    handler = LogFile(path)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("t").warning("before")
        path.rename(tmp_path / "service.log.1")  # what logrotate does first
        assert reopen_log_files() >= 1  # what its postrotate's SIGUSR1 does
        assert path.exists()
        logging.getLogger("t").warning("after")
        handler.flush()
        assert "after" in path.read_text() and "after" not in (tmp_path / "service.log.1").read_text()
    finally:
        root.removeHandler(handler)
        handler.close()
