"""Our condor_submit translation agrees with HTCondor's on a corpus of submit files.

htcondor 25 cannot turn a submit file into job ads without a schedd, so the reference
is htcondor 24's legacy ``htcondor.Submit(text).jobs()``, installed by this test into a
throwaway venv under .cache/ (kept between runs).  Every attribute the reference makes
must be in our ad with the same expression; the few it does not make and we do are
listed below with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.proxies import make_user_proxy
from updraft.core import classads
from userpool.submit.cluster import build_cluster
from userpool.submit.context import SubmitEnvironment
from userpool.submit.parse import SubmitError, parse_submit

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
REFERENCE_VERSION = "24.12.24"
VENV = ROOT / ".cache" / f"htcondor-{REFERENCE_VERSION}"

#: attributes the schedd sets (or that name the submitting tool), not condor_submit's translation
NOT_COMPARED = {
    "ClusterId": "set by the schedd",
    "ProcId": "set by the schedd (compared separately, by position)",
    "QDate": "set by the schedd at submit time",
    "EnteredCurrentStatus": "set by the schedd at submit time",
    "Owner": "set by the schedd from the authenticated identity (the bindings leave it undefined)",
    "CondorVersion": "names the tool's version",
    "CondorPlatform": "names the tool's build platform",
    "JobSubmitMethod": "names the tool: 0 is condor_submit, 2 the python bindings",
}
#: attributes we add that the bindings' jobs() leaves out, and why
EXTRA_ALLOWED = {
    "x509userproxysubject": "condor_submit reads the proxy's identity; the bindings' jobs() does not",
    "x509UserProxyExpiration": "condor_submit reads the proxy's expiry; the bindings' jobs() does not",
}

FILES = sorted(p.name for p in CORPUS.glob("*.sub"))


def _reference_python() -> Path:
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"htcondor=={REFERENCE_VERSION}",
        ],
        check=True,
    )
    return python


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("corpus")
    shutil.copytree(CORPUS, work, dirs_exist_ok=True)
    make_user_proxy(work / "proxy.pem", hours=12)
    return work


@pytest.fixture(scope="module")
def reference(workdir: Path) -> dict[str, dict]:
    python = _reference_python()
    env = dict(os.environ, CONDOR_CONFIG="/dev/null")
    result = subprocess.run(
        [str(python), str(Path(__file__).parent / "reference_htcondor24.py"), *FILES],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def _same(ours: str, theirs: str) -> bool:
    if ours == theirs:
        return True
    try:
        if classads.is_literal(ours) and classads.is_literal(theirs):
            return classads.value_of_text(ours) == classads.value_of_text(theirs)
        return str(classads.parse(ours)) == str(classads.parse(theirs))
    except classads.ExpressionError:
        return False


def test_corpus_is_big_enough() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("name", FILES)
def test_translation_agrees(
    name: str, workdir: Path, reference: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("CONDOR_CONFIG", "/dev/null")
    expected = reference[name]
    text = (workdir / name).read_text()
    env = SubmitEnvironment.here("conformance", str(workdir))
    try:
        spec = build_cluster(parse_submit(text, name), 1, env, with_inputs=False)
    except SubmitError as exc:
        assert "error" in expected, f"we refused what HTCondor accepts: {exc}"
        return
    assert "error" not in expected, f"HTCondor refuses this file ({expected['error']}) and we did not"
    theirs_ads = expected["ads"]
    assert len(spec.procs) == len(theirs_ads), "number of procs"
    for proc, theirs in enumerate(theirs_ads):
        ours = spec.ad_of(proc)
        assert int(theirs["ProcId"]) == proc
        ours_lower = {k.lower(): v for k, v in ours.items()}
        problems = []
        for attribute, text in sorted(theirs.items()):
            if attribute in NOT_COMPARED:
                continue
            mine = ours_lower.get(attribute.lower())
            if mine is None:
                problems.append(f"missing {attribute} = {text}")
            elif not _same(mine, text):
                problems.append(f"{attribute}: ours {mine!r}, HTCondor {text!r}")
        theirs_lower = {k.lower() for k in theirs}
        for attribute in sorted(ours):
            if (
                attribute.lower() not in theirs_lower
                and attribute not in NOT_COMPARED
                and attribute not in EXTRA_ALLOWED
            ):
                problems.append(f"extra {attribute} = {ours[attribute]}")
        assert not problems, f"proc {proc}:\n  " + "\n  ".join(problems)
