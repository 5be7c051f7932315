"""Job policy expressions, evaluated as HTCondor's schedd and shadow do.

On exit: OnExitHold first (true -> hold, code 3), then OnExitRemove (true or absent ->
the job leaves the queue; false -> it runs again).  max_retries needs nothing here:
condor_submit folds it into OnExitRemove with NumJobCompletions and JobMaxRetries.

Periodically, for jobs in the queue: PeriodicHold (not held), PeriodicRemove (any),
PeriodicRelease (held, but never a hold the user asked for).  A policy expression
that evaluates to undefined holds the job with code 5, as HTCondor does, so a typo
in a policy does not silently do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from updraft.core import classads
from updraft.core.protocol import HoldCode

Action = Literal["hold", "remove", "release", "requeue", "complete"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    code: int = 0
    subcode: int = 0
    attribute: str = ""


def _reason(ad: classads.ClassAd, attribute: str, text: str, outcome: str) -> str:
    custom = ad.eval(attribute + "Reason") if attribute + "Reason" in ad else None
    if isinstance(custom, str) and custom:
        return custom
    return f"The job attribute {attribute} expression '{text}' evaluated to {outcome}"


def _subcode(ad: classads.ClassAd, attribute: str) -> int:
    value = ad.eval(attribute + "SubCode") if attribute + "SubCode" in ad else None
    return classads.whole_number(value) or 0


def evaluate_policy(ad: classads.ClassAd, attribute: str) -> bool | None:
    """True/False, or None when the attribute exists but is undefined or an error."""
    if attribute not in ad:
        return False
    value = ad.eval(attribute)
    if isinstance(value, classads.classad2.Value):
        return None
    return classads.is_true(value)


def undefined_hold(ad: classads.ClassAd, attribute: str) -> Decision:
    text = str(ad.lookup(attribute))
    return Decision(
        "hold",
        f"The job attribute {attribute} expression '{text}' evaluated to UNDEFINED",
        HoldCode.JobPolicyUndefined,
        0,
        attribute,
    )


def on_exit(ad: classads.ClassAd) -> Decision:
    """What to do with a job whose process ended; ``ad`` already carries the exit attributes."""
    held = evaluate_policy(ad, "OnExitHold")
    if held is None:
        return undefined_hold(ad, "OnExitHold")
    if held:
        text = str(ad.lookup("OnExitHold"))
        return Decision(
            "hold",
            _reason(ad, "OnExitHold", text, "TRUE"),
            HoldCode.JobPolicy,
            _subcode(ad, "OnExitHold"),
            "OnExitHold",
        )
    if "OnExitRemove" not in ad:
        return Decision("complete", "exited", attribute="")
    removed = evaluate_policy(ad, "OnExitRemove")
    if removed is None:
        return undefined_hold(ad, "OnExitRemove")
    if removed:
        return Decision("complete", "exited", attribute="OnExitRemove")
    text = str(ad.lookup("OnExitRemove"))
    return Decision(
        "requeue",
        f"The job attribute OnExitRemove expression '{text}' evaluated to FALSE",
        attribute="OnExitRemove",
    )


def periodic_decision(ad: classads.ClassAd, attribute: str) -> Decision | None:
    """The decision when ``attribute`` (PeriodicHold/Remove/Release) fired for this job."""
    outcome = evaluate_policy(ad, attribute)
    if outcome is None:
        return undefined_hold(ad, attribute)
    if not outcome:
        return None
    text = str(ad.lookup(attribute))
    if attribute == "PeriodicHold":
        return Decision(
            "hold",
            _reason(ad, attribute, text, "TRUE"),
            HoldCode.JobPolicy,
            _subcode(ad, attribute),
            attribute,
        )
    if attribute == "PeriodicRemove":
        return Decision("remove", _reason(ad, attribute, text, "TRUE"), attribute=attribute)
    return Decision("release", _reason(ad, attribute, text, "TRUE"), attribute=attribute)
