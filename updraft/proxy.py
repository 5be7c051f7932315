"""`updraft proxy refresh`: send jobs a fresh X.509 proxy, as HTCondor forwards a renewed x509userproxy."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from updraft.core.client import Client
from updraft.core.payloads import CredentialRequest, QueryRequest
from updraft.core.protocol import parse_literal
from userpool.submit.credentials import proxy_attributes


def refresh(args: argparse.Namespace) -> int:
    """Group the jobs by (proxy name in their sandbox, local file to send); send each file once."""
    client = Client.from_environment(pool=args.pool)
    ads = client.query(QueryRequest("", ["ClusterId", "ProcId", "x509userproxy"], args.jobs)).ads
    groups: dict[tuple[str, str], list[str]] = {}
    status = 0
    for ad in ads:
        job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
        if "x509userproxy" not in ad:
            print(f"Job {job_id}: carries no x509userproxy")
            status = 1
            continue
        original = str(parse_literal(ad["x509userproxy"]))
        groups.setdefault((Path(original).name, args.file or original), []).append(job_id)
    for (name, path), jobs in groups.items():
        expiration = int(proxy_attributes(path)["x509UserProxyExpiration"])
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if client.missing_blobs([digest]):
            client.put_blob(digest, Path(path))
        result = client.refresh_credential(CredentialRequest(jobs, name, digest, len(data), expiration))
        for job_id in result.done:
            print(f"Job {job_id}: proxy refreshed")
        for job_id, why in {**result.refused, **result.unchanged}.items():
            print(f"Job {job_id}: not refreshed: {why}")
            status = 1
    return status if ads else 1
