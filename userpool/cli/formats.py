"""Tables in the layout of HTCondor's condor_q and condor_history."""

from __future__ import annotations

import os
import time
import urllib.parse
from typing import Any

from updraft.core.protocol import JobStatus
from userpool.cli.common import table_values

TOTAL_ORDER = ("completed", "removed", "idle", "running", "held", "suspended")


def schedd_banner(url: str) -> str:
    host = urllib.parse.urlsplit(url).netloc
    return f"-- Schedd: updraft@{host} : <{host}> @ {time.strftime('%m/%d/%y %H:%M:%S')}"


def format_totals(who: str, totals: dict[str, int]) -> str:
    total = totals.get("total", sum(v for k, v in totals.items() if k != "total"))
    parts = ", ".join(f"{totals.get(name, 0)} {name}" for name in TOTAL_ORDER)
    return f"Total for {who}: {total} jobs; {parts}"


def submitted(qdate: Any) -> str:
    return time.strftime("%m/%d %H:%M", time.localtime(qdate)) if isinstance(qdate, int) else "??/?? ??:??"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}+{hours:02d}:{minutes:02d}:{secs:02d}"


def job_ranges(ids: list[tuple[int, int]]) -> str:
    ids = sorted(ids)
    if not ids:
        return ""
    first, last = ids[0], ids[-1]
    if first == last:
        return f"{first[0]}.{first[1]}"
    if first[0] == last[0] and last[1] - first[1] + 1 == len(ids):
        return f"{first[0]}.{first[1]}-{last[1]}"
    return f"{first[0]}.{first[1]} ... {last[0]}.{last[1]}"


def format_batch_table(batches: list[dict[str, Any]]) -> str:
    any_held = any(b["counts"].get(JobStatus.HELD, 0) for b in batches)
    owner_width = max([5] + [len(b["owner"]) for b in batches])
    name_width = max([12] + [len(str(b["name"])) for b in batches])
    header = f"{'OWNER':<{owner_width}} {'BATCH_NAME':<{name_width}}  SUBMITTED   DONE   RUN    IDLE"
    header += "   HOLD" if any_held else ""
    header += "  TOTAL JOB_IDS"
    lines = [header]
    for batch in batches:
        counts = batch["counts"]
        in_queue = sum(counts.values())
        total = max(sum(batch["clusters"].values()), in_queue)
        done = total - in_queue + counts.get(JobStatus.COMPLETED, 0)
        if "dag" in batch:  # a DAG: its nodes done and in all, as its DAGMan job says
            dag_done, dag_total, dag_id = batch["dag"]
            done = dag_done if isinstance(dag_done, int) else 0
            total = dag_total if isinstance(dag_total, int) else in_queue
            if not batch["ids"]:
                batch["ids"] = [(dag_id, 0)]

        def cell(value: int) -> str:
            return str(value) if value else "_"

        line = (
            f"{batch['owner']:<{owner_width}} {batch['name']!s:<{name_width}} {submitted(batch['qdate']):>11}"
            f" {cell(done):>6} {cell(counts.get(JobStatus.RUNNING, 0) + counts.get(JobStatus.SUSPENDED, 0)):>5}"
            f" {cell(counts.get(JobStatus.IDLE, 0)):>7}"
        )
        if any_held:
            line += f" {cell(counts.get(JobStatus.HELD, 0)):>6}"
        line += f" {total:>6} {job_ranges(batch['ids'])}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _command(values: dict[str, Any]) -> str:
    command = os.path.basename(str(values.get("Cmd") or ""))
    args = values.get("Args")
    if not isinstance(args, str):
        args = values.get("Arguments")
    if isinstance(args, str) and args:
        command += " " + args.replace("' '", " ")
    return command


def format_job_table(
    ads: list[dict[str, str]],
    now: float,
    with_host: bool = False,
    names: dict[tuple[int, int], str] | None = None,
) -> str:
    """condor_q -nobatch; ``names``: what the OWNER column shows instead for some jobs (-dag's nodes)."""
    attrs = [
        "ClusterId", "ProcId", "Owner", "QDate", "JobStatus", "JobPrio", "ImageSize", "Cmd", "Args", "Arguments",
        "RemoteWallClockTime", "JobCurrentStartDate", "RemoteHost", "MemoryUsage",
    ]  # fmt: skip
    last = "HOST(S)" if with_host else "CMD"
    owner_title = "OWNER/NODENAME" if names is not None else "OWNER"  # condor_q -dag's header
    lines = [f" {'ID':<7} {owner_title:<14} {'SUBMITTED':>11}   {'RUN_TIME':>10} ST PRI SIZE {last}"]
    for texts in ads:
        values = table_values(texts, attrs)
        status = int(values["JobStatus"]) if isinstance(values["JobStatus"], int) else 1
        run_time = (
            values["RemoteWallClockTime"] if isinstance(values["RemoteWallClockTime"], (int, float)) else 0
        )
        if status in (JobStatus.RUNNING, JobStatus.SUSPENDED) and isinstance(
            values["JobCurrentStartDate"], int
        ):
            run_time += now - values["JobCurrentStartDate"]
        size_kb = values["ImageSize"] if isinstance(values["ImageSize"], (int, float)) else 0
        job_id = f"{values['ClusterId']}.{values['ProcId']}"
        tail = (
            str(values["RemoteHost"])
            if with_host and isinstance(values["RemoteHost"], str)
            else _command(values)
        )
        prio = values["JobPrio"] if isinstance(values["JobPrio"], int) else 0
        owner = (names or {}).get((values["ClusterId"], values["ProcId"])) or values["Owner"]
        lines.append(
            f" {job_id:<7} {owner!s:<14} {submitted(values['QDate']):>11} {duration(run_time):>12}"
            f" {JobStatus(status).letter}  {prio:<3} {size_kb / 1024:>4.1f} {tail}"
        )
    return "\n".join(lines) + "\n"


def format_hold_table(ads: list[dict[str, str]]) -> str:
    attrs = ["ClusterId", "ProcId", "Owner", "EnteredCurrentStatus", "HoldReason"]
    lines = [f" {'ID':<7} {'OWNER':<14} {'HELD_SINCE':>11}  HOLD_REASON"]
    for texts in ads:
        values = table_values(texts, attrs)
        job_id = f"{values['ClusterId']}.{values['ProcId']}"
        reason = values["HoldReason"] if isinstance(values["HoldReason"], str) else ""
        lines.append(
            f" {job_id:<7} {values['Owner']!s:<14} {submitted(values['EnteredCurrentStatus']):>11}  {reason}"
        )
    return "\n".join(lines) + "\n"


def format_history_table(ads: list[dict[str, str]]) -> str:
    attrs = [
        "ClusterId",
        "ProcId",
        "Owner",
        "QDate",
        "RemoteWallClockTime",
        "JobStatus",
        "CompletionDate",
        "Cmd",
        "Args",
        "Arguments",
    ]
    lines = [f" {'ID':<7} {'OWNER':<14} {'SUBMITTED':>11}   {'RUN_TIME':>10} ST   {'COMPLETED':>11} CMD"]
    for texts in ads:
        values = table_values(texts, attrs)
        job_id = f"{values['ClusterId']}.{values['ProcId']}"
        run_time = (
            values["RemoteWallClockTime"] if isinstance(values["RemoteWallClockTime"], (int, float)) else 0
        )
        status = int(values["JobStatus"]) if isinstance(values["JobStatus"], int) else 4
        lines.append(
            f" {job_id:<7} {values['Owner']!s:<14} {submitted(values['QDate']):>11} {duration(run_time):>12}"
            f" {JobStatus(status).letter}  {submitted(values['CompletionDate']):>12} {_command(values)}"
        )
    return "\n".join(lines) + "\n"
