"""The bad-input corpus: every malformed input in bad_input/ with the error it must produce.

- submit/*.sub: condor_submit exits 1 naming the file (and line), nothing is queued;
- factory/*.yaml, frontend/*.yaml: the loader's ConfigError names file, line and field;
- classad.yaml: each expression is refused by condor_q -constraint and by the job query API;
- api.yaml: raw HTTP requests to the pool, with the status and the words of the error.

The first line of each file says what it must produce (``# error: ...``, line numbers
count that line too).  To add a case, add a file or a list item: the tests find it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from factory.config import load_factory_config
from frontend.config import load_frontend_config
from tests.support.pools import RunningPool
from updraft.core.configfile import ConfigError
from updraft.core.protocol import Scope

CORPUS = Path(__file__).parent / "bad_input"
LOADERS: dict[str, Callable[[Path], Any]] = {"factory": load_factory_config, "frontend": load_frontend_config}


def expected_error(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path}: the first line must say '# error: ...'"
    return first.removeprefix("# error: ")


def files(kind: str, suffix: str) -> list[Path]:
    return sorted((CORPUS / kind).glob(f"*{suffix}"))


CLASSADS = [case["expression"] for case in yaml.safe_load((CORPUS / "classad.yaml").read_text())]
API = yaml.safe_load((CORPUS / "api.yaml").read_text())


def test_the_corpus_has_at_least_fifty_cases() -> None:
    counts = {
        "submit": len(files("submit", ".sub")),
        "factory": len(files("factory", ".yaml")),
        "frontend": len(files("frontend", ".yaml")),
        "classad": len(CLASSADS),
        "api": len(API),
    }
    assert sum(counts.values()) >= 50, counts
    assert all(counts.values()), counts


@pytest.mark.parametrize("path", files("submit", ".sub"), ids=lambda p: p.stem)
def test_submit_file(pool: RunningPool, workdir: Path, path: Path) -> None:
    shutil.copy(path, workdir / path.name)
    owner = f"corpus-{path.stem.replace('_', '-')}"[:40]
    result = pool.run("condor_submit", path.name, user=owner, cwd=workdir)
    assert result.returncode == 1, result.stdout
    expected = expected_error(path)
    where = f"{path.name}, " if expected.startswith("line ") else f"{path.name}: "
    assert where + expected in result.stderr, result.stderr
    assert "submitted" not in result.stdout
    assert pool.run("condor_q", "-af", "ClusterId", user=owner).stdout == ""


@pytest.mark.parametrize(
    ("kind", "path"),
    [(kind, path) for kind in LOADERS for path in files(kind, ".yaml")],
    ids=lambda v: v if isinstance(v, str) else v.stem,
)
def test_config_file(kind: str, path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    with pytest.raises(ConfigError) as caught:
        LOADERS[kind](copy)
    message = str(caught.value)
    assert message.startswith(f"{copy}:"), message
    assert expected_error(path) in message, message


@pytest.mark.parametrize("expression", CLASSADS)
def test_classad_expression(pool: RunningPool, expression: str) -> None:
    cli = pool.run("condor_q", "-constraint", expression, user="corpus")
    assert cli.returncode != 0
    assert "invalid -constraint: " in cli.stderr and expression.strip() in cli.stderr, cli.stderr
    answer = requests.post(
        f"{pool.url}/v1/jobs/query",
        json={"constraint": expression},
        headers={"Authorization": f"Bearer {pool.token('corpus')}"},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "ExpressionError"
    # the reason is classad2's ("not a valid ClassAd expression", "unexpected ';'"), the field and text ours
    assert error["message"].startswith("constraint: ") and error["message"].endswith(
        f": {expression.strip()!r}"
    )


@pytest.mark.parametrize("case", API, ids=lambda c: c["name"])
def test_api_request(pool: RunningPool, case: dict[str, Any]) -> None:
    scope = case.get("scope", "user")
    headers = {"Content-Type": "application/json"}
    if scope != "none":
        headers["Authorization"] = f"Bearer {pool.token('corpus-' + scope, Scope(scope))}"
    answer = requests.request(
        case["method"], pool.url + case["path"], data=case.get("body"), headers=headers, timeout=30
    )
    assert answer.status_code == case["status"], answer.text
    error = answer.json()["error"]
    assert case["error"] in error["message"], error
