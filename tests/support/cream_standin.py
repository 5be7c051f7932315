"""A stand-in for a CREAM CE, for the factory's tests.  It is NOT a CREAM CE.

No CREAM CE can be installed any more (the software ended with EMI/UMD), so the cream
adapter is tested against this server, which follows the documented CREAM interface:

- SOAP over HTTPS with the client's X.509 proxy as its credential (CREAM2 and the gridsite
  delegation service, element names in factory/adapters/cream_soap.py);
- JobRegister with autoStart false, a lease id and a delegation id; JobStart; JobInfo;
  JobList; JobCancel; JobSuspend/JobResume; JobPurge; setLease; getProxyReq, putProxy,
  renewProxyReq (the delegated proxy is handed to the job as X509_USER_PROXY and replaced
  in place on renewal);
- the CREAM job state machine: REGISTERED -> PENDING -> IDLE -> RUNNING -> REALLY-RUNNING
  -> DONE-OK | DONE-FAILED, with HELD (suspend), CANCELLED and ABORTED;
- leases: a job whose lease expires is cancelled and purged, as the CREAM-WMS design says.

Where it differs from a real CE, and says so: the input sandbox is uploaded with HTTPS PUT
to the job's CREAMInputSandboxURI (a real CE gives a gsiftp:// URI), and the output
sandbox is read with HTTPS GET from CREAMOutputSandboxURI; the "batch system" is local
processes with a fixed number of slots; state lives in memory.

Run: python -m tests.support.cream_standin --state DIR --cert C --key K --ca CA --allow DN [--port N]
It prints ``CREAM_URL=https://localhost:PORT`` once it listens.
"""

from __future__ import annotations

import argparse
import http.server
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import classad2
import htcondor2  # noqa: F401 - loads the ClassAd functions before classad2 is used
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from factory.adapters import cream_soap

MAX_LEASE_S = 24 * 3600


@dataclass
class Job:
    id: str
    owner: str
    jdl: str
    ad: Any
    lease_id: str
    delegation_id: str
    directory: Path
    state: str = "REGISTERED"
    history: list[tuple[str, float]] = field(default_factory=list)
    exit_code: str = ""
    failure: str = ""
    description: str = ""
    process: subprocess.Popen[bytes] | None = None

    def move(self, state: str, description: str = "") -> None:
        self.state = state
        self.description = description or self.description
        self.history.append((state, time.time()))

    def value(self, name: str, default: Any = None) -> Any:
        try:
            return self.ad.eval(name)
        except Exception:
            return default


@dataclass
class Delegation:
    key: rsa.RSAPrivateKey
    proxy: bytes = b""


class CE:
    def __init__(self, state_dir: Path, allowed: list[str], slots: int, url: str) -> None:
        self.state_dir = state_dir
        self.allowed = allowed
        self.slots = slots
        self.url = url
        self.jobs: dict[str, Job] = {}
        self.leases: dict[tuple[str, str], float] = {}
        self.delegations: dict[tuple[str, str], Delegation] = {}
        self.pending_keys: dict[
            tuple[str, str], rsa.RSAPrivateKey
        ] = {}  # a request sent, its proxy not back yet
        self.lock = threading.RLock()

    # -- helpers ---------------------------------------------------------------------------------
    def job(self, owner: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise cream_soap.SoapFault("JobUnknownFault", f"job {job_id} is not known")
        return job

    def properties(self, job: Job) -> cream_soap.Node:
        node = cream_soap.Node().add("id", job.id).add("creamURL", self.url + cream_soap.CREAM_PATH)
        node.add(
            "property",
            cream_soap.Node()
            .add("name", "CREAMInputSandboxURI")
            .add("value", f"{self.url}/ce-cream/isb/{job.id}"),
        )
        node.add(
            "property",
            cream_soap.Node()
            .add("name", "CREAMOutputSandboxURI")
            .add("value", f"{self.url}/ce-cream/osb/{job.id}"),
        )
        return node

    # -- CREAM2 ----------------------------------------------------------------------------------
    def JobRegister(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        result = cream_soap.Node()
        for description in body.nodes("jobDescriptionList"):
            jdl = description.text("JDL")
            lease_id, delegation_id = description.text("leaseId"), description.text("delegationId")
            entry = cream_soap.Node().add("jobDescriptionId", description.text("jobDescriptionId"))
            try:
                ad = classad2.parseOne(jdl)
                if not isinstance(ad.get("Executable"), str):
                    raise cream_soap.SoapFault("InvalidArgumentFault", "the JDL has no Executable")
                if lease_id and (owner, lease_id) not in self.leases:
                    raise cream_soap.SoapFault("LeaseIdMismatchFault", f"no lease {lease_id!r}")
                delegation = self.delegations.get((owner, delegation_id))
                if delegation_id and (delegation is None or not delegation.proxy):
                    raise cream_soap.SoapFault(
                        "DelegationIdMismatchFault", f"no delegation {delegation_id!r}"
                    )
            except cream_soap.SoapFault as problem:
                entry.add(problem.kind, cream_soap.Node().add("description", problem.message))
            except Exception as exc:
                entry.add(
                    "InvalidArgumentFault",
                    cream_soap.Node().add("description", f"cannot parse the JDL: {exc}"),
                )
            else:
                job_id = "CREAM" + secrets.token_hex(5)
                directory = self.state_dir / "jobs" / job_id
                directory.mkdir(parents=True)
                job = Job(job_id, owner, jdl, ad, lease_id, delegation_id, directory)
                job.move("REGISTERED")
                with self.lock:
                    self.jobs[job_id] = job
                entry.add("jobId", self.properties(job))
                if description.text("autoStart") == "true":
                    self._start(job)
            result.add("result", entry)
        return result

    def _start(self, job: Job) -> None:
        if job.state != "REGISTERED":
            raise cream_soap.SoapFault("InvalidArgumentFault", f"job {job.id} is {job.state}, not REGISTERED")
        job.move("PENDING")

    def _each(self, owner: str, body: cream_soap.Node, action: Any) -> cream_soap.Node:
        result = cream_soap.Node()
        for job_id_node in body.nodes("jobId"):
            job_id = job_id_node.text("id")
            entry = cream_soap.Node().add("jobId", cream_soap.Node().add("id", job_id))
            try:
                with self.lock:
                    action(self.job(owner, job_id))
            except cream_soap.SoapFault as problem:
                entry.add(problem.kind, cream_soap.Node().add("description", problem.message))
            result.add("result", entry)
        return result

    def JobStart(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        return self._each(owner, body, self._start)

    def JobCancel(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        return self._each(owner, body, lambda job: self._cancel(job, "Cancelled by user"))

    def _cancel(self, job: Job, why: str) -> None:
        if job.state in cream_soap.TERMINAL:
            raise cream_soap.SoapFault("InvalidArgumentFault", f"job {job.id} already ended ({job.state})")
        if job.process is not None and job.process.poll() is None:
            try:
                os.killpg(job.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            job.process.wait()
        job.failure = why
        job.move("CANCELLED", why)

    def JobSuspend(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        def suspend(job: Job) -> None:
            if job.state not in ("IDLE", "RUNNING", "REALLY-RUNNING"):
                raise cream_soap.SoapFault(
                    "InvalidArgumentFault", f"job {job.id} is {job.state}: cannot suspend"
                )
            if job.process is not None:
                os.killpg(job.process.pid, signal.SIGSTOP)
            job.move("HELD", "suspended by user")

        return self._each(owner, body, suspend)

    def JobResume(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        def resume(job: Job) -> None:
            if job.state != "HELD":
                raise cream_soap.SoapFault("InvalidArgumentFault", f"job {job.id} is {job.state}: not HELD")
            if job.process is not None:
                os.killpg(job.process.pid, signal.SIGCONT)
                job.move("REALLY-RUNNING", "resumed")
            else:
                job.move("IDLE", "resumed")

        return self._each(owner, body, resume)

    def JobPurge(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        def purge(job: Job) -> None:
            if job.state not in cream_soap.TERMINAL and job.state != "REGISTERED":
                raise cream_soap.SoapFault(
                    "InvalidArgumentFault", f"job {job.id} is {job.state}: cancel it first"
                )
            self.jobs.pop(job.id, None)

        return self._each(owner, body, purge)

    def JobInfo(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        result = cream_soap.Node()
        for job_id_node in body.nodes("jobId"):
            job_id = job_id_node.text("id")
            entry = cream_soap.Node().add("jobId", cream_soap.Node().add("id", job_id))
            try:
                with self.lock:
                    job = self.job(owner, job_id)
                    info = (
                        cream_soap.Node()
                        .add("jobId", self.properties(job))
                        .add("JDL", job.jdl)
                        .add("leaseId", job.lease_id)
                    )
                    info.add("delegationProxyId", job.delegation_id)
                    for state, stamp in job.history:
                        status = cream_soap.Node().add("name", state).add("timestamp", f"{stamp:.3f}")
                        if state == job.state:
                            status.add("exitCode", job.exit_code or None).add(
                                "failureReason", job.failure or None
                            )
                            status.add("description", job.description or None)
                        info.add("status", status)
                entry.add("JobInfo", info)
            except cream_soap.SoapFault as problem:
                entry.add(problem.kind, cream_soap.Node().add("description", problem.message))
            result.add("result", entry)
        return result

    def JobList(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        result = cream_soap.Node()
        with self.lock:
            for job in self.jobs.values():
                if job.owner == owner:
                    result.add(
                        "result",
                        cream_soap.Node().add("id", job.id).add("creamURL", self.url + cream_soap.CREAM_PATH),
                    )
        return result

    def setLease(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        lease = body.node("lease")
        lease_id = lease.text("leaseId")
        try:
            wanted = float(lease.text("leaseTime"))
        except ValueError:
            raise cream_soap.SoapFault("InvalidArgumentFault", "leaseTime must be epoch seconds") from None
        if not lease_id:
            raise cream_soap.SoapFault("InvalidArgumentFault", "a lease needs an id")
        granted = min(wanted, time.time() + MAX_LEASE_S)
        with self.lock:
            self.leases[(owner, lease_id)] = granted
        return cream_soap.Node().add(
            "lease", cream_soap.Node().add("leaseId", lease_id).add("leaseTime", f"{granted:.0f}")
        )

    # -- delegation --------------------------------------------------------------------------------
    def getProxyReq(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        return self._request(owner, body.text("delegationID"), "getProxyReqReturn")

    def renewProxyReq(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        delegation_id = body.text("delegationID")
        if (owner, delegation_id) not in self.delegations:
            raise cream_soap.SoapFault(
                "DelegationIdMismatchFault", f"no delegation {delegation_id!r} to renew"
            )
        return self._request(owner, delegation_id, "renewProxyReqReturn")

    def _request(self, owner: str, delegation_id: str, answer: str) -> cream_soap.Node:
        if not delegation_id:
            raise cream_soap.SoapFault("InvalidArgumentFault", "a delegation needs an id")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        request = (
            x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
        )
        with self.lock:
            self.pending_keys[(owner, delegation_id)] = key
        return cream_soap.Node().add(answer, request.public_bytes(serialization.Encoding.PEM).decode())

    def putProxy(self, owner: str, body: cream_soap.Node) -> cream_soap.Node:
        delegation_id, pem = body.text("delegationID"), body.text("proxy").encode()
        with self.lock:
            key = self.pending_keys.pop((owner, delegation_id), None)
            if key is None:
                raise cream_soap.SoapFault(
                    "DelegationIdMismatchFault", f"no request outstanding for delegation {delegation_id!r}"
                )
            try:
                certificate = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise cream_soap.SoapFault(
                    "InvalidArgumentFault", "the proxy is not a PEM certificate"
                ) from None
            if certificate.public_key().public_numbers() != key.public_key().public_numbers():
                raise cream_soap.SoapFault(
                    "InvalidArgumentFault", "the proxy does not match the request's key"
                )
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            first_end = pem.index(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----\n")
            proxy = pem[:first_end] + key_pem + pem[first_end:]
            self.delegations[(owner, delegation_id)] = Delegation(key, proxy)
            for job in self.jobs.values():  # proxy renewal: running jobs see the new one at once
                if (
                    job.owner == owner
                    and job.delegation_id == delegation_id
                    and (job.directory / "user.proxy").exists()
                ):
                    _write(job.directory / "user.proxy", proxy)
        return cream_soap.Node()

    # -- the "batch system" and the leases ---------------------------------------------------------
    def tick(self) -> None:
        now = time.time()
        with self.lock:
            for (owner, lease_id), expiry in list(self.leases.items()):
                if expiry > now:
                    continue
                for job in [j for j in self.jobs.values() if j.owner == owner and j.lease_id == lease_id]:
                    if job.state not in cream_soap.TERMINAL:
                        self._cancel(job, "lease expired")
                    self.jobs.pop(job.id, None)  # purged with its lease
                del self.leases[(owner, lease_id)]
            running = sum(
                1
                for j in self.jobs.values()
                if j.state in ("RUNNING", "REALLY-RUNNING", "HELD") and j.process
            )
            for job in sorted(self.jobs.values(), key=lambda j: j.history[0][1]):
                if job.state == "PENDING":
                    missing = [
                        name
                        for name in job.value("InputSandbox", []) or []
                        if not (job.directory / str(name)).exists()
                    ]
                    if missing:
                        job.failure = f"input sandbox file(s) missing: {', '.join(map(str, missing))}"
                        job.move("ABORTED", job.failure)
                    else:
                        job.move("IDLE", "submitted to the batch system")
                elif job.state == "IDLE" and job.process is None and running < self.slots:
                    self._launch(job)
                    running += 1
                elif job.state == "RUNNING" and (job.directory / ".really_running").exists():
                    job.move("REALLY-RUNNING", "the job wrapper started the payload")
                if job.state in ("RUNNING", "REALLY-RUNNING") and job.process is not None:
                    code = job.process.poll()
                    if code is not None:
                        job.exit_code = str(code)
                        job.move("DONE-OK" if code == 0 else "DONE-FAILED", f"exit code {code}")
                        if code:
                            job.failure = f"the job exited with {code}"

    def _launch(self, job: Job) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(job.directory), "LANG": "C.UTF-8"}
        for item in job.value("Environment", []) or []:
            name, _, value = str(item).partition("=")
            env[name] = value
        delegation = self.delegations.get((job.owner, job.delegation_id))
        if delegation is not None and delegation.proxy:
            _write(job.directory / "user.proxy", delegation.proxy)
            env["X509_USER_PROXY"] = str(job.directory / "user.proxy")
        executable = str(job.value("Executable"))
        arguments = str(job.value("Arguments", "") or "")
        stdout = open(job.directory / str(job.value("StdOutput", "stdout")), "wb")  # noqa: SIM115 - the job's
        stderr = open(job.directory / str(job.value("StdError", "stderr")), "wb")  # noqa: SIM115
        wrapper = f'touch .really_running; exec /bin/sh ./"$0" {arguments}'
        job.process = subprocess.Popen(
            ["/bin/sh", "-c", wrapper, executable], cwd=job.directory, env=env, stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        stdout.close()
        stderr.close()
        job.move("RUNNING", "started on the worker node")

    def shutdown(self) -> None:
        with self.lock:
            for job in self.jobs.values():
                if job.process is not None and job.process.poll() is None:
                    try:
                        os.killpg(job.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def user_of(certificate: dict[str, Any]) -> str:
    """The end-entity DN behind a proxy: the subject without the proxy's trailing CNs."""
    parts = [f"{key}={value}" for rdn in certificate.get("subject", ()) for key, value in rdn]
    names = {"organizationName": "O", "organizationalUnitName": "OU", "commonName": "CN", "countryName": "C"}
    parts = [names.get(p.split("=", 1)[0], p.split("=", 1)[0]) + "=" + p.split("=", 1)[1] for p in parts]
    while (
        parts
        and parts[-1].startswith("CN=")
        and (parts[-1][3:].isdigit() or parts[-1][3:] in ("proxy", "limited proxy"))
    ):
        parts.pop()
    return "/" + "/".join(parts)


class Handler(http.server.BaseHTTPRequestHandler):
    ce: CE

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _owner(self) -> str:
        certificate = self.connection.getpeercert()
        owner = user_of(certificate or {})
        if owner not in self.ce.allowed:
            raise cream_soap.SoapFault("AuthorizationFault", f"{owner} is not authorized on this CE")
        return owner

    def _send(self, code: int, body: bytes, content_type: str = "text/xml; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        data = self.rfile.read(length)
        namespace = (
            cream_soap.NS_DELEGATION if self.path == cream_soap.DELEGATION_PATH else cream_soap.NS_CREAM
        )
        try:
            if self.path not in (cream_soap.CREAM_PATH, cream_soap.DELEGATION_PATH):
                raise cream_soap.SoapFault("GenericFault", f"no service at {self.path}")
            owner = self._owner()
            element, body = cream_soap.parse(data)
            operation = element.removesuffix("Request")
            method = getattr(self.ce, operation, None)
            if method is None or operation.startswith("_"):
                raise cream_soap.SoapFault("GenericFault", f"unknown operation {element}")
            answer = method(owner, body)
            self._send(200, cream_soap.envelope(operation + "Response", answer, namespace))
        except cream_soap.SoapFault as problem:
            self._send(500, cream_soap.fault(problem.kind, problem.message))

    def _sandbox(self, kind: str) -> Path | None:
        parts = self.path.split("/")
        if (
            len(parts) != 5
            or parts[1] != "ce-cream"
            or parts[2] != kind
            or "/" in parts[4]
            or parts[4] in ("", ".", "..")
        ):
            return None
        job = self.ce.job(self._owner(), parts[3])
        return job.directory / parts[4]

    def do_PUT(self) -> None:
        try:
            target = self._sandbox("isb")
            if target is None:
                self._send(404, b"no such sandbox", "text/plain")
                return
            _write(target, self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self._send(201, b"", "text/plain")
        except cream_soap.SoapFault as problem:
            self._send(
                403 if problem.kind == "AuthorizationFault" else 404, problem.message.encode(), "text/plain"
            )

    def do_GET(self) -> None:
        try:
            target = self._sandbox("osb")
            if target is None or not target.is_file():
                self._send(404, b"no such file", "text/plain")
                return
            self._send(200, target.read_bytes(), "application/octet-stream")
        except cream_soap.SoapFault as problem:
            self._send(
                403 if problem.kind == "AuthorizationFault" else 404, problem.message.encode(), "text/plain"
            )


@dataclass
class RunningStandin:
    process: subprocess.Popen[str]
    values: dict[str, str]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_standin(directory: Path, slots: int = 4) -> RunningStandin:
    """Credentials (a CA, localhost, a factory user and its proxy) and the stand-in serving them."""
    from tests.support.proxies import make_grid

    grid = make_grid(directory / "grid")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.cream_standin", "--state", str(directory / "ce"), "--cert", str(grid.host_cert),
         "--key", str(grid.host_key), "--ca", str(grid.ca), "--allow", grid.user_dn, "--slots", str(slots)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("CREAM_URL="):
        process.kill()
        raise RuntimeError(f"the CREAM stand-in did not start: {line!r}")
    values = {
        "CREAM_URL": line.split("=", 1)[1],
        "X509_USER_PROXY": str(grid.proxy),
        "CREAM_CA": str(grid.ca),
        "GRID_DIR": str(grid.directory),
    }
    return RunningStandin(process, values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--allow", action="append", required=True, help="a user DN allowed to submit")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args(argv)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://localhost:{server.server_address[1]}"
    ce = CE(Path(args.state), args.allow, args.slots, url)
    Handler.ce = ce
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(0.2):
            ce.tick()

    threading.Thread(target=ticker, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"CREAM_URL={url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        ce.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
