"""Submit files: line numbers, several queue statements, -append, multi-line item lists."""

from pathlib import Path

import pytest

from userpool.submit.cluster import build_cluster
from userpool.submit.context import SubmitEnvironment
from userpool.submit.parse import SubmitError, parse_submit


@pytest.fixture
def env(tmp_path: Path) -> SubmitEnvironment:
    (tmp_path / "job.sh").write_text("#!/bin/sh\n")
    return SubmitEnvironment(str(tmp_path), "tester", {"HOME": "/home/tester"}, "example.org")


def build(text: str, env: SubmitEnvironment, append: list[str] | None = None):
    return build_cluster(parse_submit(text, "t.sub", append or []), 7, env, with_inputs=False)


def test_line_numbers_count_continuations(env: SubmitEnvironment) -> None:
    text = "executable = job.sh\narguments = one \\\n  two\nrequirements = (Memory >\nqueue\n"
    with pytest.raises(SubmitError) as error:
        build(text, env)
    assert error.value.line == 4 and "requirements" in str(error.value)


def test_several_queue_statements_continue_the_proc_numbers(env: SubmitEnvironment) -> None:
    text = "executable = job.sh\narguments = first\nqueue 2\narguments = second\nqueue 1\n"
    spec = build(text, env)
    assert [spec.ad_of(i)["Args"] for i in range(3)] == ['"first"', '"first"', '"second"']


def test_append_goes_before_the_queue(env: SubmitEnvironment) -> None:
    spec = build("executable = job.sh\nqueue 2\n", env, ['+Color = "red"', "arguments = $(Process)"])
    assert spec.ad_of(1)["Color"] == '"red"' and spec.ad_of(1)["Args"] == '"1"'


def test_queue_from_append_when_file_has_none(env: SubmitEnvironment) -> None:
    spec = build("executable = job.sh\n", env, ["queue 3"])
    assert len(spec.procs) == 3


def test_multi_line_items(env: SubmitEnvironment) -> None:
    text = "executable = job.sh\narguments = $(a)-$(b)\nqueue a,b from (\n  1 x\n  2 y\n)\n"
    spec = build(text, env)
    assert [spec.ad_of(i)["Args"] for i in range(2)] == ['"1-x"', '"2-y"']


def test_unclosed_items(env: SubmitEnvironment) -> None:
    with pytest.raises(SubmitError, match="never closed"):
        build("executable = job.sh\nqueue a from (\n 1\n", env)


def test_deltas_hold_only_differences(env: SubmitEnvironment) -> None:
    spec = build(
        "executable = job.sh\narguments = $(Process)\noutput = o.$INT(Process,%02d)\nqueue 100\n", env
    )
    assert spec.procs[0] == {}
    assert spec.procs[42] == {"Args": '"42"', "Out": '"o.42"'}
    assert spec.cluster_ad["Out"] == '"o.00"'


def test_cluster_macro_uses_the_reserved_id(env: SubmitEnvironment) -> None:
    spec = build("executable = job.sh\noutput = out.$(Cluster).$(Process)\nqueue 2\n", env)
    assert spec.ad_of(1)["Out"] == '"out.7.1"'


def test_unknown_command_and_used_macro(env: SubmitEnvironment) -> None:
    # HTCondor takes request_memroy as a custom resource and exectuable as a macro: accepted, with a hint
    spec = build("executable = job.sh\nrequest_memroy = 100\nexectuable = x\nqueue\n", env)
    assert any("did you mean 'request_memory'" in w for w in spec.warnings)
    assert any("did you mean 'executable'" in w and "line 3" in w for w in spec.warnings)
    with pytest.raises(SubmitError, match="'exectuable' on line 1 looks like a misspelt 'executable'"):
        build("exectuable = job.sh\nqueue\n", env)
    spec = build("executable = job.sh\nmydir = data\narguments = $(mydir)\nqueue\n", env)
    assert spec.cluster_ad["Args"] == '"data"'


def test_random_macros_vary_per_proc(env: SubmitEnvironment) -> None:
    spec = build("executable = job.sh\narguments = $RANDOM_INTEGER(1, 1000000)\nqueue 20\n", env)
    assert len({spec.ad_of(i)["Args"] for i in range(20)}) > 1
