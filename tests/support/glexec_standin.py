#!/usr/bin/env python3
"""A stand-in for gLExec, which no distribution ships any more, implementing its documented interface.

Like gLExec it takes the user's proxy from GLEXEC_CLIENT_CERT (or GLEXEC_SOURCE_PROXY),
authorizes its DN against a grid-mapfile, copies the proxy to GLEXEC_TARGET_PROXY owned
by the mapped account, logs who ran what (so admins can find the real user), and executes
the command line under the mapped account.  It switches accounts for real, with setpriv,
so it must run as root (gLExec is setuid root).  Exit codes follow gLExec: 201 client
error, 202 system or authorization error, 203 not authorized, 204 cannot execute.

Configuration: a JSON file next to this script, <script>.conf, with "mapfile" and "log".
"""

import json
import os
import pwd
import shutil
import ssl
import sys
import time

SHORT = {
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "commonName": "CN",
    "domainComponent": "DC",
    "emailAddress": "emailAddress",
}


def fail(code, message):
    sys.stderr.write(f"glexec: {message}\n")
    sys.exit(code)


def dn(name):
    return "".join(f"/{SHORT.get(key, key)}={value}" for rdn in name for key, value in rdn)


def identity(path):
    try:
        cert = ssl._ssl._test_decode_cert(path)
    except Exception as exc:
        fail(201, f"cannot read the credential {path}: {exc}")
    subject, issuer = dn(cert["subject"]), dn(cert["issuer"])
    # an RFC 3820 proxy's subject is its issuer's plus one CN: the identity is the issuer
    return issuer if subject.startswith(issuer + "/CN=") else subject


def main():
    conf_path = os.path.abspath(__file__) + ".conf"
    with open(conf_path) as handle:
        conf = json.load(handle)
    credential = os.environ.get("GLEXEC_CLIENT_CERT") or os.environ.get("GLEXEC_SOURCE_PROXY")
    if not credential:
        fail(201, "no GLEXEC_CLIENT_CERT or GLEXEC_SOURCE_PROXY")
    if len(sys.argv) < 2:
        fail(201, "no command given")
    if os.geteuid() != 0:
        fail(202, "not running as root (gLExec is installed setuid root)")
    who = identity(credential)
    mapping = {}
    with open(conf["mapfile"]) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith('"'):
                name, _, account = line[1:].partition('"')
                mapping[name] = account.strip()
    account = mapping.get(who)
    if not account:
        fail(203, f"DN {who!r} is not authorized (not in {conf['mapfile']})")
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        fail(202, f"mapped account {account!r} does not exist")
    target = os.environ.get("GLEXEC_TARGET_PROXY")
    if target:
        source = os.environ.get("GLEXEC_SOURCE_PROXY") or credential
        shutil.copyfile(source, target)
        os.chown(target, entry.pw_uid, entry.pw_gid)
        os.chmod(target, 0o600)
    with open(conf["log"], "a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {who} -> {account}: {' '.join(sys.argv[1:])}\n")
    os.environ.update({"HOME": entry.pw_dir, "USER": account, "LOGNAME": account})
    try:
        os.execvp(
            "setpriv",
            [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--init-groups",
                "--",
                *sys.argv[1:],
            ],
        )
    except OSError as exc:
        fail(204, f"cannot execute: {exc}")


if __name__ == "__main__":
    main()
