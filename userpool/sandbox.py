"""Sandboxes: input files stored once by sha256, outputs spooled per job.

Inputs are content-addressed blobs: a 100,000-job cluster that shares one executable
uploads it once, and the pilot verifies what it downloads against the digest in the
job's manifest.  Outputs arrive from the pilot as one tar per job; every member name
goes through the same path check the pilot uses, links are refused, and the total is
capped, so an output can never write outside its spool directory.  When the pool can
write to the job's Iwd it delivers them there as condor_submit users expect; they
always stay retrievable with condor_transfer_data.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from updraft.core.errors import BadRequest, NotFound, SandboxRefused, TooLarge
from updraft.core.payloads import SandboxFile
from updraft.core.protocol import ProtocolError, parse_literal, safe_relative_path

log = logging.getLogger("updraft.sandbox")

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
STDOUT_NAME = "_condor_stdout"
STDERR_NAME = "_condor_stderr"


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise BadRequest(f"{digest!r} is not a sha256 hex digest")
    return digest


def check_manifest(files: Iterable[SandboxFile], max_file_bytes: int, max_total_bytes: int) -> None:
    total = 0
    seen: set[str] = set()
    for item in files:
        try:
            path = safe_relative_path(item.path)
        except ProtocolError as exc:
            raise SandboxRefused(str(exc)) from None
        if path in seen:
            raise BadRequest(f"input file {path!r} listed twice")
        seen.add(path)
        check_digest(item.digest)
        if item.size < 0 or item.size > max_file_bytes:
            raise TooLarge(f"input file {path!r} is {item.size} bytes; the limit is {max_file_bytes}")
        total += item.size
    if total > max_total_bytes:
        raise TooLarge(f"input sandbox is {total} bytes; the limit is {max_total_bytes}")


class BlobStore:
    def __init__(self, root: Path, max_file_bytes: int) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def missing(self, digests: Iterable[str]) -> list[str]:
        return sorted({d for d in digests if not self.has(d)})

    async def put(self, digest: str, chunks: AsyncIterator[bytes]) -> int:
        """Store a blob streamed from the client, verifying its digest and size."""
        target = self.path(digest)
        if target.is_file():
            async for _chunk in chunks:  # drain: the client already sent it
                pass
            return target.stat().st_size
        hasher = hashlib.sha256()
        size = 0
        fd, temp_name = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_file_bytes:
                        raise TooLarge(f"upload exceeds the per-file limit of {self.max_file_bytes} bytes")
                    hasher.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if hasher.hexdigest() != digest:
                raise BadRequest(
                    f"upload does not match its digest {digest[:12]}... (got {hasher.hexdigest()[:12]}...)"
                )
            target.parent.mkdir(exist_ok=True)
            os.replace(temp_name, target)
            return size
        finally:
            if os.path.exists(temp_name):
                os.unlink(temp_name)

    def open(self, digest: str) -> Path:
        path = self.path(digest)
        if not path.is_file():
            raise NotFound(f"blob {digest[:12]}... is not in the pool")
        return path

    def collect(self, referenced: set[str]) -> int:
        """Delete blobs no queued job refers to; returns how many."""
        removed = 0
        for directory in self.root.iterdir():
            if directory.name == "tmp" or not directory.is_dir():
                continue
            for blob in directory.iterdir():
                if blob.name not in referenced:
                    blob.unlink(missing_ok=True)
                    removed += 1
        return removed


class Spool:
    """Per-job output directories under the pool's home."""

    def __init__(self, root: Path, max_output_bytes: int, max_files: int = 10_000) -> None:
        self.root = root
        self.max_output_bytes = max_output_bytes
        self.max_files = max_files
        root.mkdir(parents=True, exist_ok=True)

    def directory(self, cluster_id: int, proc_id: int) -> Path:
        return self.root / str(cluster_id) / str(proc_id)

    def accept(self, cluster_id: int, proc_id: int, tar_path: Path) -> list[str]:
        """Unpack a pilot's output tar into the job's spool directory; replaces earlier output.

        Every dimension is bounded, not only the file bytes: each member's header (with its
        long-name and pax records) counts toward the byte limit, and the files and directories
        it makes, the implicit parents included, toward ``max_files``, so a small archive
        cannot make 30,000 directories.
        """
        target = self.directory(cluster_id, proc_id)
        staging = target.with_name(f".{proc_id}.incoming")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        names: list[str] = []
        directories: set[str] = set()
        total = 0
        try:
            with tarfile.open(tar_path, "r:*") as archive:
                for member in archive:
                    if not (member.isfile() or member.isdir()):
                        raise SandboxRefused(
                            f"output member {member.name!r}: only files and directories are accepted"
                        )
                    try:
                        relative = safe_relative_path(member.name)
                    except ProtocolError as exc:
                        raise SandboxRefused(f"output member refused: {exc}") from None
                    total += (member.offset_data - member.offset) + (member.size if member.isfile() else 0)
                    if total > self.max_output_bytes:
                        raise TooLarge(
                            f"output sandbox exceeds {self.max_output_bytes} bytes (max_output_sandbox_mb;"
                            " headers count)"
                        )
                    parts = relative.split("/")
                    depth = len(parts) if member.isdir() else len(parts) - 1
                    directories.update("/".join(parts[:index]) for index in range(1, depth + 1))
                    if len(directories) + len(names) + 1 > self.max_files:
                        raise TooLarge(
                            f"output sandbox has more than {self.max_files} files and directories"
                            " (max_output_files)"
                        )
                    destination = staging / relative
                    if member.isdir():
                        destination.mkdir(parents=True, exist_ok=True)
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    source = archive.extractfile(member)
                    assert source is not None
                    with open(destination, "wb") as handle:
                        shutil.copyfileobj(source, handle)
                    os.chmod(destination, 0o700 if member.mode & 0o111 else 0o600)
                    names.append(relative)
        except tarfile.TarError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise BadRequest(f"output is not a readable tar archive: {exc}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return sorted(names)

    def files(self, cluster_id: int, proc_id: int) -> list[str]:
        root = self.directory(cluster_id, proc_id)
        if not root.is_dir():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def tar(self, cluster_id: int, proc_id: int) -> bytes:
        root = self.directory(cluster_id, proc_id)
        if not root.is_dir():
            raise NotFound(f"job {cluster_id}.{proc_id} has no spooled output")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name in self.files(cluster_id, proc_id):
                archive.add(root / name, arcname=name, recursive=False, filter=_as_delivered)
        return buffer.getvalue()

    def remove(self, cluster_id: int, proc_id: int) -> None:
        shutil.rmtree(self.directory(cluster_id, proc_id), ignore_errors=True)


def delivered_mode(spooled_mode: int) -> int:
    """The mode an output file gets in the submit directory: the spool keeps it private (0600/0700)."""
    return 0o755 if spooled_mode & 0o100 else 0o644


def _as_delivered(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = delivered_mode(info.mode)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ---------------------------------------------------------------------------------------------
# Where outputs go in the Iwd (shared by the pool's delivery and condor_transfer_data)
# ---------------------------------------------------------------------------------------------
def string_attr(texts: dict[str, str], name: str) -> str | None:
    """The value of a string attribute of an ad's texts (None: absent, or not a string literal)."""
    text = texts.get(name)
    if text is None:
        return None
    try:
        value = parse_literal(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def parse_remaps(text: str | None) -> dict[str, str]:
    """TransferOutputRemaps: "src = dst; src2 = dst2" (backslash escapes ; and =)."""
    remaps: dict[str, str] = {}
    if not text:
        return remaps
    for part in re.split(r"(?<!\\);", text):
        if not part.strip():
            continue
        if "=" not in part:
            raise BadRequest(f"transfer_output_remaps entry {part.strip()!r} has no '='")
        source, destination = part.split("=", 1)
        remaps[source.strip().replace("\\;", ";")] = destination.strip().replace("\\;", ";")
    return remaps


def outside_iwd(texts: dict[str, str], destination: Path) -> bool:
    """A destination the pool must not write: not inside the job's Iwd once symlinks are followed.

    The pool writes with its own rights, not the submitter's, so an ``output = /etc/...`` or a
    remap through ``..`` or a symlink stays in the spool (condor_transfer_data fetches it
    with the user's own rights).
    """
    iwd = os.path.realpath(string_attr(texts, "Iwd") or "/nonexistent")
    parent = os.path.realpath(destination.parent)
    return os.path.commonpath([iwd, parent]) != iwd or os.path.islink(destination)


def output_destinations(texts: dict[str, str], spooled: Iterable[str]) -> dict[str, Path]:
    """For each spooled output file, the absolute path it belongs at, per the job's ad.

    stdout and stderr go to Out and Err (relative to Iwd); other files go to Iwd under their
    own name unless TransferOutputRemaps says otherwise.  /dev/null outputs are dropped.
    """
    iwd = Path(string_attr(texts, "Iwd") or ".")
    remaps = parse_remaps(string_attr(texts, "TransferOutputRemaps"))
    out: dict[str, Path] = {}
    for name in spooled:
        if name == STDOUT_NAME:
            destination = string_attr(texts, "Out")
        elif name == STDERR_NAME:
            destination = string_attr(texts, "Err")
        else:
            destination = remaps.get(name, remaps.get(os.path.basename(name), name))
        if not destination or destination == "/dev/null":
            continue
        if "://" in destination:  # URL remaps are a pilot's business, not ours
            continue
        path = Path(destination)
        out[name] = path if path.is_absolute() else iwd / path
    return out
