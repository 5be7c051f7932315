"""condor_submit and condor_q against a running pool, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.pools import RunningPool


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_submit_prints_like_condor_submit(pool: RunningPool, workdir: Path) -> None:
    write(workdir / "a.sub", "executable = job.sh\narguments = $(Process)\nqueue 3\n")
    result = pool.run("condor_submit", "a.sub", user="alice", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.lines[-1].startswith("3 job(s) submitted to cluster ")
    cluster = int(result.lines[-1].split()[-1].rstrip("."))
    listing = pool.run(
        "condor_q", "-af", "ClusterId", "ProcId", "Args", "Owner", "JobStatus", str(cluster), user="alice"
    )
    assert listing.returncode == 0, listing.stderr
    assert listing.lines == [f"{cluster} {p} {p} alice 1" for p in range(3)]


def test_terse_batch_name_and_append(pool: RunningPool, workdir: Path) -> None:
    write(workdir / "b.sub", "executable = job.sh\nqueue 2\n")
    result = pool.run(
        "condor_submit",
        "-terse",
        "-batch-name",
        "nightly",
        "-append",
        '+Color = "blue"',
        "b.sub",
        user="alice",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    first, last = result.stdout.strip().split(" - ")
    cluster = first.split(".")[0]
    assert first == f"{cluster}.0" and last == f"{cluster}.1"
    listing = pool.run("condor_q", cluster, "-af", "JobBatchName", "Color", user="alice")
    assert listing.lines == ["nightly blue", "nightly blue"]


def test_submit_from_stdin_and_queue_items(pool: RunningPool, workdir: Path) -> None:
    text = 'executable = job.sh\narguments = $(site)\n+DESIRED_Sites = "$(site)"\nqueue site in (UCSD, Nebraska)\n'
    result = pool.run("condor_submit", user="bob", cwd=workdir, stdin=text)
    assert result.returncode == 0, result.stderr
    cluster = result.lines[-1].split()[-1].rstrip(".")
    listing = pool.run("condor_q", cluster, "-af", "DESIRED_Sites", user="bob")
    assert listing.lines == ["UCSD", "Nebraska"]


def test_condor_q_default_shows_only_my_jobs_in_batches(pool: RunningPool, workdir: Path) -> None:
    write(workdir / "mine.sub", "executable = job.sh\nbatch_name = carol_batch\nqueue 4\n")
    assert pool.run("condor_submit", "mine.sub", user="carol", cwd=workdir).returncode == 0
    mine = pool.run("condor_q", user="carol")
    assert mine.returncode == 0
    assert "OWNER" in mine.stdout and "BATCH_NAME" in mine.stdout
    assert any(line.startswith("carol") and "carol_batch" in line for line in mine.lines)
    assert (
        "Total for query: 4 jobs; 0 completed, 0 removed, 4 idle, 0 running, 0 held, 0 suspended"
        in mine.stdout
    )
    others = pool.run("condor_q", user="dave")
    assert "carol_batch" not in others.stdout
    everyone = pool.run("condor_q", "-allusers", user="dave")
    assert "carol_batch" in everyone.stdout


def test_condor_q_formats(pool: RunningPool, workdir: Path) -> None:
    write(workdir / "f.sub", "executable = job.sh\nrequest_memory = 2 GB\n+Weight = 3\nqueue 2\n")
    cluster = pool.run("condor_submit", "f.sub", user="erin", cwd=workdir).lines[-1].split()[-1].rstrip(".")
    long = pool.run("condor_q", "-l", f"{cluster}.1", user="erin")
    assert "RequestMemory = 2048" in long.lines and "Weight = 3" in long.lines and "ProcId = 1" in long.lines
    data = json.loads(pool.run("condor_q", "-json", cluster, user="erin").stdout)
    assert (
        [ad["ProcId"] for ad in data] == [0, 1]
        and data[0]["RequestMemory"] == 2048
        and data[0]["Owner"] == "erin"
    )
    nobatch = pool.run("condor_q", "-nobatch", cluster, user="erin")
    assert any(line.split()[:1] == [f"{cluster}.0"] and " I " in line for line in nobatch.lines)
    totals = pool.run("condor_q", "-totals", cluster, user="erin")
    assert (
        totals.stdout.strip()
        == "Total for query: 2 jobs; 0 completed, 0 removed, 2 idle, 0 running, 0 held, 0 suspended"
    )
    constrained = pool.run(
        "condor_q", "-constraint", "Weight == 3 && ProcId == 1", "-af:j", "RequestMemory * 2", user="erin"
    )
    assert constrained.lines == [f"{cluster}.1 4096"]
    formatted = pool.run(
        "condor_q", cluster, "-format", "%d:", "ProcId", "-format", "%s\\n", "Owner", user="erin"
    )
    assert formatted.lines == ["0:erin", "1:erin"]


def test_bad_constraint_is_an_error(pool: RunningPool) -> None:
    result = pool.run("condor_q", "-constraint", "JobStatus == ", user="alice")
    assert result.returncode != 0
    assert "constraint" in result.stderr


def test_autocluster_listing(pool: RunningPool, workdir: Path) -> None:
    write(workdir / "ac.sub", "executable = job.sh\nrequest_memory = 777\nqueue 5\n")
    assert pool.run("condor_submit", "ac.sub", user="frank", cwd=workdir).returncode == 0
    listing = pool.run("condor_q", "-autocluster", "-af", "JobCount", "RequestMemory", user="frank")
    assert "5 777" in listing.lines


def test_dry_run_queues_nothing(pool: RunningPool, workdir: Path) -> None:
    """HTCondor's -dry-run FILE: the ads go to FILE (- is stdout); a lone file name is refused,
    since HTCondor would read the submit description from stdin and overwrite that file."""
    write(workdir / "d.sub", 'executable = job.sh\n+Marker = "dry"\nqueue 2\n')
    shown = pool.run("condor_submit", "-dry-run", "-", "d.sub", user="gina", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert 'Marker = "dry"' in shown.stdout and "2 job(s) dry-run to cluster" in shown.stdout
    saved = pool.run("condor_submit", "-dry-run", "ads.txt", "d.sub", user="gina", cwd=workdir)
    assert saved.returncode == 0 and "Marker" not in saved.stdout
    assert (workdir / "ads.txt").read_text().count('Marker = "dry"') == 2
    alone = pool.run("condor_submit", "-dry-run", "d.sub", user="gina", cwd=workdir)
    assert alone.returncode == 1 and "No submit filename was provided" in alone.stderr
    assert "Marker" in (workdir / "d.sub").read_text()  # untouched
    assert (
        pool.run(
            "condor_q", "-constraint", 'Marker == "dry"', "-af", "ProcId", "-allusers", user="gina"
        ).stdout
        == ""
    )


def test_condor_q_batch_of_a_held_job_and_the_user_totals(pool: RunningPool, workdir: Path) -> None:
    """As HTCondor 24: a held one-job batch is HOLD 1, TOTAL 1; the user's own totals sit between."""
    write(workdir / "held.sub", "executable = job.sh\nbatch_name = held_one\nhold = true\nqueue\n")
    assert pool.run("condor_submit", "held.sub", user="hank", cwd=workdir).returncode == 0
    shown = pool.run("condor_q", user="hank")
    header = next(line for line in shown.lines if line.startswith("OWNER"))
    row = next(line for line in shown.lines if "held_one" in line).split()
    assert "HOLD" in header.split()
    # OWNER BATCH_NAME SUBMITTED(2 words) DONE RUN IDLE HOLD TOTAL JOB_IDS
    assert row[4:9] == ["_", "_", "_", "1", "1"], shown.stdout
    totals = [line for line in shown.lines if line.startswith("Total for")]
    assert [line.split(":")[0] for line in totals] == [
        "Total for query",
        "Total for hank",
        "Total for all users",
    ]


def test_condor_status_prints_nothing_without_slots(tmp_path: Path) -> None:
    from tests.support.pools import start_pool

    empty = start_pool(tmp_path / "empty")
    try:
        shown = empty.run("condor_status")
        assert (shown.returncode, shown.stdout) == (0, "")
    finally:
        empty.stop()


def test_condor_status_activity_time_of_a_slot_without_one(capsys) -> None:
    from userpool.cli.condor_status import print_slots

    print_slots([{"Name": '"slot1@n1"', "State": '"Unclaimed"', "Activity": '"Idle"', "Cpus": "1"}], False)
    row = capsys.readouterr().out.splitlines()[1]
    assert row.endswith("0+00:00:00") and "None" not in row
