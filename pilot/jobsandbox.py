"""A job's sandbox on the pilot: its input files in, its output files back, through the pool.

Inputs are fetched by digest under the job's claim and verified; outputs are the standard
streams plus ``transfer_output_files`` (or every file the job made or changed), sent as one
tar.  A file that cannot move for the job's own reason holds it (``JobHeld``); the pool's
trouble (5xx, unreachable) is not the job's and lets it run again elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

from pilot.jobenv import JobHeld, ad_text
from updraft.core import payloads, protocol
from updraft.core.client import Client, ClientError

INTERNAL_FILES = {".job.ad", ".machine.ad", ".glexec.proxy", "_condor_stdout", "_condor_stderr", "tmp"}


def fetch_inputs(client: Client, match: payloads.Match, scratch: Path) -> None:
    """Every input file of the job into ``scratch``, verified against its digest and size."""
    for item in match.inputs:
        try:
            relative = protocol.safe_relative_path(item.path)
        except protocol.ProtocolError as exc:
            raise JobHeld(f"input sandbox refused: {exc}", protocol.HoldCode.DownloadFileError, 1) from None
        target = scratch / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            client.get_blob(item.digest, target, match.claim_id)
        except ClientError as exc:
            if exc.status >= 500:  # the pool's trouble, not the job's: give it back
                raise
            raise JobHeld(
                f"failed to download input {relative}: {exc}", protocol.HoldCode.DownloadFileError, 2
            ) from None
        # an unreachable pool or a full or vanished scratch disk is not the job's fault
        # either: those fall through to vacating, and the job runs again elsewhere
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != item.digest or target.stat().st_size != item.size:
            raise JobHeld(
                f"input {relative} arrived corrupted (sha256 {digest[:12]}..., expected {item.digest[:12]}...)",
                protocol.HoldCode.DownloadFileError,
                3,
            )
        os.chmod(target, item.mode & 0o777)


def output_files(
    ad: dict[str, str], scratch: Path, match: payloads.Match, started_wall: float
) -> list[tuple[str, Path]]:
    """(name, path) of what goes back: stdout, stderr and transfer_output_files, or every new file."""
    files = [(name, scratch / name) for name in ("_condor_stdout", "_condor_stderr")]
    listed = ad_text(ad, "TransferOutput")
    if isinstance(listed, str) and listed.strip():
        for name in [n.strip() for n in listed.split(",") if n.strip()]:
            try:
                relative = protocol.safe_relative_path(name)
            except protocol.ProtocolError as exc:
                raise JobHeld(f"transfer_output_files: {exc}", protocol.HoldCode.UploadFileError, 1) from None
            path = scratch / relative
            if path.is_dir():
                files += [(str(f.relative_to(scratch)), f) for f in sorted(path.rglob("*")) if f.is_file()]
            elif path.is_file():
                files.append((relative, path))
            else:
                raise JobHeld(
                    f"Transfer output files failure: the job did not create {relative}",
                    protocol.HoldCode.UploadFileError,
                    2,
                )
        return files
    inputs = {item.path: item.digest for item in match.inputs}
    for path in sorted(scratch.iterdir()):
        if path.name in INTERNAL_FILES or not path.is_file():
            continue
        if path.name in inputs and path.stat().st_mtime <= started_wall:
            continue  # an input the job did not touch
        files.append((path.name, path))
    return files


def send_outputs(client: Client, match: payloads.Match, scratch: Path, files: list[tuple[str, Path]]) -> None:
    """One tar of ``files`` to the pool under the job's claim; a refusal holds the job."""
    archive_path = scratch.parent / f"output-{match.claim_id[:12]}.tar"
    try:
        with tarfile.open(archive_path, "w") as archive:
            for name, path in files:
                if path.exists():
                    archive.add(path, arcname=name, recursive=False)
        client.put_output(match.claim_id, archive_path)
    except ClientError as exc:
        if exc.status >= 500:  # the pool's trouble: the lease runs out and the job runs again
            raise
        raise JobHeld(
            f"the pool refused the job's output: {exc.message}", protocol.HoldCode.UploadFileError, 3
        ) from None
    finally:
        archive_path.unlink(missing_ok=True)
