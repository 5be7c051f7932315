"""GRAM5 from Python: ctypes on libglobus_gram_client, run in small helper processes.

Why not the command line: ``globusrun -status`` prints DONE both for a job that finished
and for one whose job manager it cannot reach (the library says 156 for the first and 79
for the second), and the CLI cannot do two-phase commit.  Why helper processes: the
Globus libraries keep global state (module activation, the credential they acquired) and
are not ours to make thread-safe; one helper per concurrent call keeps them apart, lets a
crash in C code cost one call rather than the factory, and lets a renewed proxy be picked
up by starting fresh helpers.

A helper reads one JSON request per line on stdin and writes one JSON answer per line.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

# globus_gram_protocol_constants.h
STATES = {
    1: "PENDING",
    2: "ACTIVE",
    4: "FAILED",
    8: "DONE",
    16: "SUSPENDED",
    32: "UNSUBMITTED",
    64: "STAGE_IN",
    128: "STAGE_OUT",
}
ERROR_WAITING_FOR_COMMIT = 110  # a two-phase request was accepted: commit it to run it
ERROR_CONTACT_NOT_FOUND = (
    156  # the job manager does not know the job (ended and forgotten, or never committed)
)
ERROR_JOB_MANAGER_UNREACHABLE = 79  # the job manager did not answer: the job's fate is unknown
ERROR_CONNECTION_FAILED = 12  # the gatekeeper did not answer
SIGNAL_COMMIT_REQUEST = 5
SIGNAL_COMMIT_END = 10


class GramLibrary:
    def __init__(self) -> None:
        self.common = ctypes.CDLL("libglobus_common.so.0", mode=ctypes.RTLD_GLOBAL)
        lib = self.lib = ctypes.CDLL("libglobus_gram_client.so.3", mode=ctypes.RTLD_GLOBAL)
        lib.globus_gram_client_ping.argtypes = [ctypes.c_char_p]
        lib.globus_gram_client_job_request.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
        ]  # fmt: skip
        lib.globus_gram_client_job_status.argtypes = [
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.globus_gram_client_job_cancel.argtypes = [ctypes.c_char_p]
        lib.globus_gram_client_job_signal.argtypes = [
            ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
        ]  # fmt: skip
        lib.globus_gram_client_job_refresh_credentials.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        lib.globus_gram_client_error_string.restype = ctypes.c_char_p
        lib.globus_gram_client_error_string.argtypes = [ctypes.c_int]
        lib.globus_gram_client_job_contact_free.argtypes = [ctypes.c_void_p]
        self.module = ctypes.addressof(ctypes.c_char.in_dll(lib, "globus_gram_client_module"))
        self.common.globus_module_activate.argtypes = [ctypes.c_void_p]
        rc = self.common.globus_module_activate(self.module)
        if rc != 0:
            raise RuntimeError(f"cannot activate the GRAM client module (error {rc})")

    def error(self, code: int) -> str:
        text = self.lib.globus_gram_client_error_string(code)
        return text.decode(errors="replace") if text else f"GRAM error {code}"

    # each operation answers {"rc": code, ...}; rc 0 is success
    def ping(self, gatekeeper: str) -> dict[str, Any]:
        return {"rc": self.lib.globus_gram_client_ping(gatekeeper.encode())}

    def submit(self, gatekeeper: str, rsl: str) -> dict[str, Any]:
        contact = ctypes.c_void_p()
        rc = self.lib.globus_gram_client_job_request(
            gatekeeper.encode(), rsl.encode(), 0, None, ctypes.byref(contact)
        )
        answer: dict[str, Any] = {"rc": rc}
        if contact.value:
            answer["contact"] = ctypes.string_at(contact.value).decode()
            self.lib.globus_gram_client_job_contact_free(contact)
        return answer

    def status(self, contact: str) -> dict[str, Any]:
        state, failure = ctypes.c_int(), ctypes.c_int()
        rc = self.lib.globus_gram_client_job_status(
            contact.encode(), ctypes.byref(state), ctypes.byref(failure)
        )
        return {"rc": rc, "state": STATES.get(state.value, str(state.value)), "failure": failure.value}

    def signal(self, contact: str, signal: int, argument: str = "") -> dict[str, Any]:
        state, failure = ctypes.c_int(), ctypes.c_int()
        rc = self.lib.globus_gram_client_job_signal(
            contact.encode(),
            signal,
            argument.encode() if argument else None,
            ctypes.byref(state),
            ctypes.byref(failure),
        )
        return {"rc": rc, "state": STATES.get(state.value, str(state.value)), "failure": failure.value}

    def cancel(self, contact: str) -> dict[str, Any]:
        return {"rc": self.lib.globus_gram_client_job_cancel(contact.encode())}

    def refresh(self, contact: str) -> dict[str, Any]:
        """Delegate this process's credential (X509_USER_PROXY, read at start) to the job manager again."""
        return {"rc": self.lib.globus_gram_client_job_refresh_credentials(contact.encode(), None)}


def serve() -> int:
    """The helper's loop: one JSON request per line in, one answer per line out."""
    try:
        library = GramLibrary()
    except (OSError, RuntimeError) as exc:
        sys.stdout.write(json.dumps({"fatal": str(exc)}) + "\n")
        sys.stdout.flush()
        return 1
    sys.stdout.write(json.dumps({"ready": os.getpid()}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        operation = getattr(library, request.pop("op"))
        answer = operation(**request)
        if answer["rc"] not in (0,):
            answer["error"] = library.error(answer["rc"])
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


class Helper:
    """One helper process; calls are serialised by its lock."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "factory.adapters.gram_client"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(environment), start_new_session=True,
        )  # fmt: skip
        hello = json.loads(self._read())
        if "fatal" in hello:
            raise OSError(f"GRAM client library: {hello['fatal']}")

    def _read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise OSError("the GRAM helper process died")
        return line

    def call(self, op: str, timeout: float = 120.0, **arguments: Any) -> dict[str, Any]:
        """One request and its answer; a helper that does not answer in time is killed."""
        stdout, stdin = self.process.stdout, self.process.stdin
        assert stdout is not None and stdin is not None
        with self.lock:
            stdin.write(json.dumps({"op": op, **arguments}) + "\n")
            stdin.flush()
            with selectors.DefaultSelector() as selector:
                selector.register(stdout, selectors.EVENT_READ)
                if not selector.select(timeout):
                    self.close()
                    raise TimeoutError(f"no answer within {timeout:.0f} s")
            return json.loads(self._read())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


if __name__ == "__main__":
    sys.exit(serve())
