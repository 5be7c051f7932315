"""condor_q -better-analyze: why a job matches no slot, clause by clause.

The job's Requirements is split at its top-level ``&&`` and each clause is counted
against every slot in the collector, the slots' own START/Requirements against the
job, and the resource fit; the report says which condition nobody satisfies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from updraft.core import classads
from updraft.core.payloads import AnalysisResult
from updraft.core.protocol import AdType, JobStatus
from userpool.negotiator import FIT

MAX_SLOTS = 20000


@dataclass(frozen=True)
class AnalysisInput:
    """What the analysis reads, taken from the pool on its own thread (the evaluation runs in the
    matchmaking thread, where it cannot hold up requests)."""

    job_id: str
    texts: dict[str, str]
    status: int
    slots: list[dict[str, str]]
    skipped_until: float | None  # the job's autocluster is left out of matchmaking until then


def gather(pool: Any, job_id: str, slot_constraint: str = "") -> AnalysisInput:
    job = pool.job_or_404(job_id)
    autocluster = getattr(job, "autocluster", None)
    key = getattr(autocluster, "key", None)
    skipped = pool.schedd.negotiator.penalty_of(key) if key is not None else None
    slots = pool.collector.query(AdType.Slot, slot_constraint)[:MAX_SLOTS]
    return AnalysisInput(job_id, job.ad(), job.status, slots, skipped)


def analysis_report(given: AnalysisInput) -> AnalysisResult:
    job_id, texts = given.job_id, given.texts
    job_ad = classads.build(texts)
    slot_ads = [classads.build(s) for s in given.slots]
    requirements = texts.get("Requirements", "true")
    clauses = classads.split_conjunction(requirements)
    counts = []
    for clause in clauses:
        matched = 0
        for slot_ad in slot_ads:
            try:
                if classads.is_true(classads.evaluate(clause, job_ad, slot_ad)):
                    matched += 1
            except classads.ExpressionError:
                break
        counts.append({"condition": clause, "matched": matched})
    rejected_by_job = rejected_by_slot = too_small = willing = 0
    for slot_ad in slot_ads:
        job_ok = classads.is_true(classads.evaluate(requirements, job_ad, slot_ad))
        fits = classads.is_true(classads.evaluate(FIT, job_ad, slot_ad))
        slot_ok = all(
            classads.is_true(slot_ad.lookup(a).eval(slot_ad, job_ad))
            for a in ("START", "Requirements")
            if a in slot_ad
        )
        if not job_ok:
            rejected_by_job += 1
        elif not fits:
            too_small += 1
        elif not slot_ok:
            rejected_by_slot += 1
        else:
            willing += 1
    status = JobStatus(given.status)
    lines = [
        f"The Requirements expression for job {job_id} is",
        "",
        f"    {requirements}",
        "",
        f"Job {job_id} defines the following attributes:",
        "",
    ]
    for name in sorted(classads.references(requirements)[0]):
        if name in texts:
            lines.append(f"    {name} = {texts[name]}")
    lines += ["", f"The Requirements expression for job {job_id} reduces to these conditions:", "",
              "         Slots", "Step    Matched  Condition", "-----  --------  ---------"]  # fmt: skip
    for step, count in enumerate(counts):
        lines.append(f"[{step}]{'':<3}{count['matched']:>9}  {count['condition']}")
    lines.append("")
    if status != JobStatus.IDLE:
        lines.append(f"{job_id}:  Job is {status.name.lower()}, not idle.")
    lines += [
        f"{job_id}:  Run analysis summary ignoring user priority.  Of {len(slot_ads)} slots,",
        f"      {rejected_by_job} are rejected by your job's requirements",
        f"      {too_small} have too few free resources for your job's requests",
        f"      {rejected_by_slot} reject your job because of their own requirements",
        f"      {willing} are able to run your job",
    ]
    if given.skipped_until is not None:
        lines.append(
            f"      Matchmaking leaves this job out until {time.strftime('%H:%M:%S', time.localtime(given.skipped_until))}:"
            " its expressions took longer than the budget to evaluate against a slot (match_eval_budget_ms)"
        )
    if not slot_ads:
        lines.append("      (no slots are advertised: no pilot is running in this pool yet)")
    else:
        for count in counts:
            if count["matched"] == 0:
                lines.append(f"      No slot satisfies: {count['condition']}")
                break
    return AnalysisResult(
        job_id, status.name, len(slot_ads), counts, rejected_by_job, too_small, rejected_by_slot, willing,
        "\n".join(lines), given.skipped_until,
    )  # fmt: skip
