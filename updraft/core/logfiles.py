"""Log files that logrotate can rotate: reopened on SIGUSR1, and whenever the file was moved.

logrotate renames a service's log and then tells the service (``postrotate`` sends SIGUSR1,
as for nginx or HTCondor's daemons); a handler that kept writing to the renamed file would
fill it for ever.  ``WatchedFileHandler`` already notices a moved or deleted file before each
record; SIGUSR1 makes the reopen immediate and covers ``copytruncate``-free setups where
nothing is logged for a while.
"""

from __future__ import annotations

import logging
import logging.handlers
import signal
from pathlib import Path


class LogFile(logging.handlers.WatchedFileHandler):
    """A service's log file (append, UTF-8), reopened by :func:`reopen_log_files`."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(str(path), encoding="utf-8")

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def reopen_log_files(*_: object) -> int:
    """Reopen every LogFile the root logger writes to; returns how many."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, LogFile)]
    for handler in handlers:
        handler.reopen()
    return len(handlers)


def reopen_on_sigusr1() -> None:
    """SIGUSR1 reopens the log files (call from the main thread; asyncio services use add_signal_handler)."""
    signal.signal(signal.SIGUSR1, reopen_log_files)
