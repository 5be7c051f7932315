"""What the grid CEs (GRAM, ARC, CREAM) share; batch.py is the base of the CLI batch sites.

- the factory's X.509 proxy (``options.proxy``), replaced in place when it is renewed;
- an HTTPS session per thread that carries it (ARC's REST and CREAM's SOAP speak HTTPS;
  sessions are not shared between threads, and a renewed proxy makes a new one);
- one delegation per entry, made once and remembered in the entry's work directory, so
  every glidein references the same one and a renewal reaches them all;
- a submission stages every glidein's files first, or none is submitted and all retry;
- the quoting RSL and xRSL use for strings.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from factory.adapters.base import GlideinSpec, Retry, SiteAdapter, SubmitOutcome
from factory.errors import SiteUnavailable
from factory.proxies import ProxyError, delegate


def rsl_quote(value: str) -> str:
    """A string in (x)RSL: double quotes, a quote inside doubled."""
    return '"' + value.replace('"', '""') + '"'


class GridCE(SiteAdapter):
    """A CE reached with the factory's proxy (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proxy: str = getattr(self.options, "proxy", "")
        self.local = threading.local()
        self.lock = threading.Lock()

    # -- the session -------------------------------------------------------------------------------
    def session(self) -> requests.Session:
        """This thread's session, made again when the proxy changed."""
        session: requests.Session | None = getattr(self.local, "session", None)
        if session is None or getattr(self.local, "proxy", None) != self.proxy:
            session = requests.Session()
            self.configure_session(session)
            self.local.session, self.local.proxy = session, self.proxy
        return session

    def configure_session(self, session: requests.Session) -> None:
        """How a new session authenticates: the proxy file holds certificate, key and chain."""
        if self.proxy:
            session.cert = self.proxy

    # -- the delegation ------------------------------------------------------------------------------
    def delegation(self) -> str:
        """The delegation every job of this entry references (made once, renewed in place)."""
        record = self.work_dir / "delegation.json"
        with self.lock:
            try:
                return str(json.loads(record.read_text())["id"])
            except (OSError, ValueError, KeyError):
                pass
            delegation_id = self.new_delegation()
            record.write_text(json.dumps({"id": delegation_id}))
            return delegation_id

    def new_delegation(self) -> str:
        """Make a delegation at the CE and put the proxy in it; returns its id."""
        raise NotImplementedError(f"{self.kind} delegates nothing")

    def delegated_proxy(self, request_pem: bytes) -> bytes:
        """The CE's delegation request signed with the factory's proxy (what is put back)."""
        try:
            return delegate(Path(self.proxy).read_bytes(), request_pem)
        except (OSError, ProxyError) as exc:
            raise SiteUnavailable(
                f"{self.entry.name}: cannot delegate the proxy {self.proxy}: {exc}"
            ) from None

    # -- submission ---------------------------------------------------------------------------------
    def stage_all(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome] | None:
        """Stage every glidein's files: None when done, else a retry for each (nothing was submitted)."""
        try:
            for glidein in glideins:
                self.stage(glidein)
        except SiteUnavailable as exc:
            return [Retry(str(exc))] * len(glideins)
        except OSError as exc:
            return [Retry(f"cannot stage the glideins: {exc.strerror}")] * len(glideins)
        return None
