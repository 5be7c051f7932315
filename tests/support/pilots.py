"""A test driver that speaks the pilot protocol to a real pool (the real pilot is pilot/).

It is not a stand-in for the pool or for anything the tests check: it plays the other
side of the wire so that pool behaviour (matching, leases, reports) can be tested
precisely before and apart from the pilot.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from updraft.core import payloads, protocol
from updraft.core.client import Client


def slot_ad(
    name: str,
    site: str = "TestSite",
    cpus: int = 1,
    memory_mb: int = 2048,
    disk_kb: int = 10_000_000,
    **extra: str,
) -> dict[str, str]:
    ad = {
        "Name": protocol.quote(name),
        "Cpus": str(cpus),
        "Memory": str(memory_mb),
        "Disk": str(disk_kb),
        "Arch": '"X86_64"',
        "OpSys": '"LINUX"',
        "HasFileTransfer": "true",
        "FileSystemDomain": '"worker.invalid"',
        "GLIDEIN_Site": protocol.quote(site),
        "START": "true",
    }
    ad.update(extra)
    return ad


@dataclass
class ProtocolPilot:
    client: Client
    slot: dict[str, str]
    claims: list[payloads.Match] = field(default_factory=list)

    def poll(self, wait_s: float = 0.0, max_matches: int = 1) -> payloads.PollResult:
        result = self.client.poll(
            payloads.PollRequest(self.slot, [m.claim_id for m in self.claims], wait_s, max_matches)
        )
        self.claims.extend(result.matches)
        return result

    def take(self, wait_s: float = 2.0) -> payloads.Match | None:
        result = self.poll(wait_s)
        return result.matches[0] if result.matches else None

    def finish(
        self,
        match: payloads.Match,
        exit_code: int | None = 0,
        signal: int | None = None,
        stdout: str = "",
        files: dict[str, str] | None = None,
    ) -> payloads.ReportResult:
        self.client.report(match.claim_id, payloads.ClaimReport("started"))
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            outputs = {"_condor_stdout": stdout, "_condor_stderr": "", **(files or {})}
            tar_path = root / "output.tar"
            with tarfile.open(tar_path, "w") as archive:
                for name, text in outputs.items():
                    path = root / "files" / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
                    archive.add(path, name)
            self.client.put_output(match.claim_id, tar_path)
        report = payloads.ClaimReport(
            "exited",
            exit_code=exit_code if signal is None else None,
            exit_signal=signal,
            usage={"RemoteUserCpu": 1.0},
        )
        answer = self.client.report(match.claim_id, report)
        self.claims = [m for m in self.claims if m.claim_id != match.claim_id]
        return answer

    def drop(self, match: payloads.Match) -> None:
        """Forget a claim without telling the pool (a pilot that died)."""
        self.claims = [m for m in self.claims if m.claim_id != match.claim_id]


def output_tar(members: list[tarfile.TarInfo], payload: bytes = b"x") -> Path:
    """An output archive as a pilot would send it, members as given (escapes included)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            if member.isfile():
                member.size = len(payload)
                archive.addfile(member, io.BytesIO(payload))
            else:
                archive.addfile(member)
    path = Path(tempfile.mkdtemp()) / "out.tar"
    path.write_bytes(buffer.getvalue())
    return path
