"""The input sandbox of a job: which local files go, under which names, with what digest.

Names follow HTCondor's file transfer: the executable and each listed file land in the
job's scratch directory under their base name, a listed directory ``d`` lands as
``d/...``, a directory listed as ``d/`` contributes its contents.  URLs are left for
the pilot to fetch.  Every name passes the same path check the pool and pilot use.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from updraft.core.payloads import SandboxFile
from updraft.core.protocol import ProtocolError, safe_relative_path
from userpool.submit.context import Context, is_scheduler_universe, split_list

CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalInput:
    name: str  # path inside the sandbox
    path: str  # absolute local path


def local_inputs(ctx: Context) -> list[LocalInput]:
    """The files this proc's commands ask to send, or a SubmitError naming the command."""
    out: dict[str, LocalInput] = {}

    def add(name: str, path: str, key: str) -> None:
        try:
            name = safe_relative_path(name)
        except ProtocolError as exc:
            raise ctx.error(key, str(exc)) from None
        previous = out.get(name)
        if previous is not None and previous.path != path:
            raise ctx.error(
                key, f"two different files would land as {name!r} in the sandbox: {previous.path} and {path}"
            )
        out[name] = LocalInput(name, path)

    command = ctx.get("executable")
    if (
        command and ctx.flag("transfer_executable", True) and not is_scheduler_universe(ctx)
    ):  # a DAG job: nothing
        path = command if os.path.isabs(command) else os.path.join(ctx.env.cwd, command)
        if not os.path.isfile(path):
            raise ctx.error("executable", f"executable {path} does not exist (or is not a file)")
        if not os.access(path, os.R_OK):
            raise ctx.error("executable", f"executable {path} is not readable")
        add(os.path.basename(path), path, "executable")
    proxy = ctx.get("x509userproxy")
    if proxy:  # the job's own credential travels with it, as condor_submit sends it
        path = ctx.in_iwd(proxy)
        if not os.path.isfile(path):
            raise ctx.error("x509userproxy", f"proxy file {path} does not exist")
        add(os.path.basename(path), path, "x509userproxy")
    stdin = ctx.get("input")
    if stdin and stdin != "/dev/null" and "://" not in stdin:
        path = ctx.in_iwd(stdin)
        if not os.path.isfile(path):
            raise ctx.error("input", f"input file {path} does not exist")
        add(os.path.basename(path), path, "input")
    for item in split_list(ctx.get("transfer_input_files")):
        if "://" in item:
            continue
        contents_only = item.endswith("/")
        path = ctx.in_iwd(item.rstrip("/"))
        if os.path.isdir(path):
            base = "" if contents_only else os.path.basename(os.path.normpath(path))
            for root, _dirs, files in os.walk(path):
                for filename in sorted(files):
                    full = os.path.join(root, filename)
                    relative = os.path.relpath(full, path)
                    add(os.path.join(base, relative) if base else relative, full, "transfer_input_files")
        elif os.path.isfile(path):
            add(os.path.basename(path), path, "transfer_input_files")
        else:
            raise ctx.error("transfer_input_files", f"input file {path} does not exist")
    return sorted(out.values(), key=lambda f: f.name)


class Hasher:
    """sha256 and size of local files, each read once per submit."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, int, int]] = {}

    def describe(self, item: LocalInput) -> SandboxFile:
        cached = self._cache.get(item.path)
        if cached is None:
            digest = hashlib.sha256()
            with open(item.path, "rb") as handle:
                while True:
                    chunk = handle.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
            stat = os.stat(item.path)
            cached = (digest.hexdigest(), stat.st_size, 0o755 if stat.st_mode & 0o111 else 0o644)
            self._cache[item.path] = cached
        digest_hex, size, mode = cached
        return SandboxFile(item.name, digest_hex, size, mode)

    def paths(self) -> dict[str, str]:
        """digest -> local path, for uploading what the pool lacks."""
        return {digest: path for path, (digest, _size, _mode) in self._cache.items()}
