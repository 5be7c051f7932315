"""Bad submit files: an error that names the line, and nothing queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pools import RunningPool

CASES = [
    ("executable = job.sh\nthis is not a command\nqueue\n", "line 2", "expected 'command = value'"),
    ("exectuable = job.sh\nqueue\n", None, "'exectuable' on line 1 looks like a misspelt 'executable'"),
    ("executable = job.sh\nif version > 8.x.y\nendif\nqueue\n", "line 2", "not a valid if condition"),
    ("executable = job.sh\nrequirements = (Memory > \nqueue\n", "line 2", "requirements"),
    ("executable = job.sh\n+Weight = (1 +\nqueue\n", "line 2", "Weight"),
    ('executable = job.sh\narguments = a "b c" d\nqueue\n', "line 2", "double-quote"),
    ('executable = job.sh\nenvironment = "NOEQUALS"\nqueue\n', "line 2", "Missing '='"),
    ("executable = missing.sh\nqueue\n", "line 1", "does not exist"),
    ("executable = job.sh\ntransfer_input_files = nope.txt\nqueue\n", "line 2", "does not exist"),
    ("executable = job.sh\nuniverse = docker\nqueue\n", "line 2", "not supported"),
    ("executable = job.sh\n", None, "no 'queue' statement"),
    ("arguments = x\nqueue\n", None, "no 'executable'"),
    ("executable = job.sh\nqueue foo bar baz\n", "line 2", "queue"),
    ("executable = job.sh\nrequest_memory = 1 + \nqueue\n", "line 2", "request_memory"),
    ("executable = job.sh\nshould_transfer_files = MAYBE\nqueue\n", "line 2", "should_transfer_files"),
    ("executable = job.sh\ninitialdir = /does/not/exist\nqueue\n", "line 2", "No such directory"),
    ("executable = job.sh\nnotification = sometimes\nqueue\n", "line 2", "notification"),
    ("executable = job.sh\ntransfer_input_files = ../../../etc\nqueue\n", "line 2", None),
]


@pytest.mark.parametrize(("text", "line", "words"), CASES)
def test_bad_submit_file(
    pool: RunningPool, workdir: Path, text: str, line: str | None, words: str | None
) -> None:
    (workdir / "bad.sub").write_text(text)
    before = pool.run("condor_q", "-allusers", "-af", "ClusterId", user="mallory").lines
    result = pool.run("condor_submit", "bad.sub", user="mallory", cwd=workdir)
    assert result.returncode == 1, result.stdout
    assert "bad.sub" in result.stderr
    if line:
        assert line in result.stderr, result.stderr
    if words:
        assert words in result.stderr, result.stderr
    assert "submitted" not in result.stdout
    assert pool.run("condor_q", "-allusers", "-af", "ClusterId", user="mallory").lines == before


def test_missing_file(pool: RunningPool, workdir: Path) -> None:
    result = pool.run("condor_submit", "nope.sub", user="mallory", cwd=workdir)
    assert result.returncode == 1
    assert "nope.sub" in result.stderr


def test_refused_by_server_leaves_nothing(pool: RunningPool, workdir: Path) -> None:
    """A cluster the pool refuses (too many attributes) is not half-queued."""
    lines = ["executable = job.sh"] + [f"+A{i} = {i}" for i in range(2100)] + ["queue 2"]
    (workdir / "huge.sub").write_text("\n".join(lines) + "\n")
    result = pool.run("condor_submit", "huge.sub", user="mallory", cwd=workdir)
    assert result.returncode == 1
    assert "2000 attributes" in result.stderr
    assert pool.run("condor_q", "-af", "ClusterId", user="mallory").stdout == ""
