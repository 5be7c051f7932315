"""Procs filled in from a template (userpool/submit/procfill.py) are the procs the handlers make."""

from __future__ import annotations

from pathlib import Path

import pytest

from userpool.submit import cluster, procfill
from userpool.submit.context import SubmitEnvironment
from userpool.submit.parse import parse_submit
from userpool.submit.procfill import ProcTemplate

FILES = {
    "numbers": "executable = job.sh\narguments = $(Process) --in d_$(Process).root\noutput = o.$(Cluster).$(Process)\n"
    "error = e.$(Process)\nlog = l.log\nqueue 50\n",
    "items": 'executable = job.sh\narguments = "$(name) -n $(Process)"\noutput = o_$(name).out\nlog = l_$(name).log\n'
    "queue name from (\n  a\n  b_c\n  q1\n  /abs\n  x.y-z\n  a\n)\n",
    "spaces": "executable = job.sh\narguments = $(name) -n $(Process)\nerror = e_$(name)\n"
    "queue name from (\n  a\n  b_c\n  two words\n  x.y-z\n  1GB\n)\n",
    "dev-null": "executable = job.sh\narguments = $(Item) $(Step)\noutput = $(Item)\n"
    "queue 3 Item in (alpha, /dev/null, beta, gamma)\n",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_filled_procs_are_the_handlers_procs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "job.sh").write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    file = parse_submit(FILES[name], f"{name}.sub", [])
    env = SubmitEnvironment.here("alice")
    fills = []
    original = ProcTemplate.fill
    monkeypatch.setattr(ProcTemplate, "fill", lambda self, *a: fills.append(1) or original(self, *a))
    filled = cluster.build_cluster(file, 7, env, with_inputs=False)
    assert fills or name != "numbers"  # the numbers' procs are filled in, not made one by one
    monkeypatch.setattr(procfill, "TEXTUAL_HANDLERS", frozenset())  # every proc through its handlers
    made = cluster.build_cluster(file, 7, env, with_inputs=False)
    assert filled.cluster_ad == made.cluster_ad
    assert filled.procs == made.procs


def _template() -> ProcTemplate:
    return ProcTemplate({"Fixed": "1"}, {"Out": '"o.@@P@@"'}, [("@@P@@", "Process")])


def test_a_value_that_is_not_plain_is_made_by_the_handlers() -> None:
    template, ran = _template(), []
    template.checked = procfill.CHECKED_PROCS  # trusted already

    def rerun() -> dict[str, str]:
        ran.append(1)
        return {"Out": '"o.a b"'}

    assert template.proc_delta({"Process": "7"}, {}, rerun) == {"Fixed": "1", "Out": '"o.7"'}
    assert template.proc_delta({"Process": "a b"}, {}, rerun) == {"Out": '"o.a b"'} and ran == [1]
    assert template.fill({"Process": ""}, {}) is None  # an empty value may change what a handler does


def test_a_template_the_first_procs_disagree_with_is_not_used() -> None:
    template = _template()
    assert template.proc_delta({"Process": "1"}, {}, lambda: {"Fixed": "1", "Out": '"o.1"'}) == {
        "Fixed": "1",
        "Out": '"o.1"',
    }
    assert not template.broken
    assert template.proc_delta({"Process": "2"}, {}, lambda: {"Out": '"other"'}) == {"Out": '"other"'}
    assert template.broken
    assert template.proc_delta({"Process": "3"}, {}, lambda: {"Out": '"made"'}) == {"Out": '"made"'}
