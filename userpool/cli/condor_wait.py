"""condor_wait: wait for jobs to finish by watching their user log, as HTCondor's does.

It reads the job event log (``log =`` in the submit file), counts the jobs it sees
submitted, and returns 0 when all of them (or the job or cluster named, or ``-num`` of them)
have terminated or been aborted; 1 when the time runs out, the log cannot be read, or it
mentions no such job.  Its messages and its exit codes are HTCondor's; it needs no pool.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

USAGE = """\

Use: condor_wait [options] <log-file> [job-number]
Where options are:
    -help             Display options
    -version          Display Condor version
    -debug            Show extra debugging info
    -status           Show job start and terminate info
    -echo             Echo log events relevant to [job-number]
    -num <number>     Wait for this many jobs to end
                       (default is all jobs)
    -wait <seconds>   Wait no more than this time
                       (default is unlimited)

This command watches a log file, and indicates when
a specific job (or all jobs mentioned in the log)
have completed or aborted.  It returns success if
all such jobs have completed or aborted, and returns
failure otherwise.

Examples:
    condor_wait logfile
    condor_wait logfile 35
    condor_wait logfile 1406.35
    condor_wait -wait 60 logfile 13.25.3
    condor_wait -num 2 logfile
"""
SUBMIT, EXECUTE, TERMINATED, ABORTED = 0, 1, 5, 9
ENDINGS = {TERMINATED: "completed", ABORTED: "aborted"}  # the events that end a job, as -status says them


class Options:
    def __init__(self) -> None:
        self.log = ""
        self.job: tuple[int | None, int | None, int | None] = (None, None, None)
        self.wait_s: int | None = None  # None: forever; 0: read what is there, then stop
        self.num = 0
        self.status = self.echo = self.debug = False


def parse(argv: list[str]) -> Options | int:
    """The options, or the exit status when there is nothing to wait for (usage, version, errors)."""
    options = Options()
    job_name = ""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in ("-help", "--help", "-h"):
            sys.stderr.write(USAGE)
            return 0
        if word in ("-version", "--version"):
            print("$CondorVersion: 24.0.0 (Updraft) $\n$CondorPlatform: X86_64-Debian_12 $")
            return 1  # as HTCondor's condor_wait: -version is not a wait that succeeded
        if word in ("-wait", "-num"):
            index += 1
            if index >= len(argv):
                sys.stderr.write(f"{word} requires an argument\n{USAGE}")
                return 1
            number = _atoi(argv[index])
            if word == "-wait":
                options.wait_s = number
            elif number < 1:
                sys.stderr.write(f"-num must be greater than zero\n{USAGE}")
                return 1
            else:
                options.num = number
        elif word in ("-status", "-echo", "-debug"):
            setattr(options, word[1:], True)
        elif options.log and not job_name and word == "-1":
            job_name = word  # a bare -1: every cluster
        elif not word.startswith("-"):
            if not options.log:
                options.log = word
            elif not job_name:
                job_name = word
            else:
                sys.stderr.write(f"Extra argument: {word}\n\n{USAGE}")
                return 1
        else:
            sys.stderr.write(USAGE)
            return 1
        index += 1
    if not options.log:
        sys.stderr.write(USAGE)
        return 1
    if job_name:
        parts = job_name.split(".")
        try:
            numbers = [int(p) for p in parts[:3]]
        except ValueError:
            print(f"Couldn't understand job number: {job_name}", file=sys.stderr)
            return 1
        given: list[int | None] = [n if n != -1 else None for n in numbers]
        given += [None] * (3 - len(given))
        options.job = (given[0], given[1], given[2])
    return options


def _atoi(text: str) -> int:
    """C's atoi, as HTCondor reads its numbers: leading digits, else 0."""
    digits = ""
    for index, char in enumerate(text.strip()):
        if char.isdigit() or (index == 0 and char in "+-"):
            digits += char
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def matches(event: Any, job: tuple[int | None, int | None, int | None]) -> bool:
    cluster, proc, subproc = job
    return (
        (cluster is None or event.cluster == cluster)
        and (proc is None or event.proc == proc)
        and (subproc is None or _subproc(event) == subproc)
    )


def _subproc(event: Any) -> int:
    try:
        return int(event.get("Subproc", 0))
    except (TypeError, ValueError):
        return 0


def watch(options: Options, clock: Callable[[], float] = time.time) -> int:
    import htcondor2

    try:
        events = htcondor2.JobEventLog(options.log)
    except Exception as exc:  # HTCondor: "Couldn't open <log>: <why>"
        reason = (
            "No such file or directory" if "No such file" in str(exc) or "exist" in str(exc) else str(exc)
        )
        print(f"Couldn't open {options.log}: {reason}", file=sys.stderr)
        return 1
    deadline = clock() + options.wait_s if options.wait_s else None
    table: set[str] = set()
    submitted = ended = 0
    while True:
        if deadline is not None and clock() > deadline:
            print("Time expired.")
            return 1
        window = 0 if options.wait_s == 0 else 1  # whole seconds, as the bindings take them
        seen = False
        for event in events.events(stop_after=window):
            seen = True
            key = f"{event.cluster}.{event.proc}.{_subproc(event)}"
            if not matches(event, options.job):
                continue
            if options.echo:
                print(f"{str(event).rstrip()}\n...")
            word = ENDINGS.get(event.type)
            if event.type == SUBMIT:
                table.add(key)
                submitted += 1
                word = "submitted"
            elif word:
                table.discard(key)
                ended += 1
            if word and options.status:
                print(f"{key} {word}")
            if event.type == EXECUTE and options.status:
                print(f"{key} executing on host {event.get('ExecuteHost', '')}")
            if options.num and ended >= options.num:
                print(f"Specifed number of jobs ({options.num}) done.")  # sic: HTCondor's spelling
                return 0
            if not table and submitted > 0 and not options.num:
                print("All jobs done.")
                return 0
        if seen:
            continue
        timed_out = options.wait_s == 0 or (deadline is not None and clock() >= deadline)
        if timed_out and not table and submitted == 0:  # HTCondor: no event before the time was up
            which = "any jobs" if options.job[0] is None else "that job"
            print(f"This log does not mention {which}!", file=sys.stderr)
            return 0 if options.wait_s == 0 else 1
        if options.wait_s == 0:
            return 0  # -wait 0: read what is there, then stop
        if timed_out:
            print("Time expired.")
            return 1


def main(argv: list[str] | None = None) -> int:
    from userpool.cli.common import main_wrapper

    @main_wrapper("condor_wait")
    def run(args: list[str] | None = None) -> int:
        options = parse(sys.argv[1:] if args is None else args)
        if isinstance(options, int):
            return options
        return watch(options)

    return run(argv)
