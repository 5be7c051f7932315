"""What every user command shares: finding the pool, reporting errors, printing ads.

Output follows HTCondor's tools so scripts written for them keep working: ``-af``
prints evaluated values separated by spaces, ``-l`` prints ``Attr = expr`` lines
with a blank line between ads, ``-json`` prints a JSON list of ads with values.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from updraft.core import classads
from updraft.core.client import Client, ClientError, PoolUnreachable
from updraft.core.errors import UpdraftError


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-pool",
        "--pool",
        dest="pool",
        help="the pool's URL (default: UPDRAFT_POOL or $UPDRAFT_HOME/pool.json)",
    )
    parser.add_argument("-name", "--name", dest="schedd_name", help=argparse.SUPPRESS)
    parser.add_argument("-debug", "--debug", action="store_true", help="show tracebacks")


def client_from(args: argparse.Namespace) -> Client:
    return Client.from_environment(pool=getattr(args, "pool", None))


def die(tool: str, message: str, status: int = 1) -> NoReturn:
    print(f"{tool}: {message}", file=sys.stderr)
    raise SystemExit(status)


def main_wrapper(
    tool: str,
) -> Callable[[Callable[[list[str] | None], int]], Callable[[list[str] | None], int]]:
    """Turn our errors into one line on stderr and HTCondor's exit statuses."""

    def decorate(function: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(function)
        def wrapper(argv: list[str] | None = None) -> int:
            debug = "-debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get(
                "UPDRAFT_DEBUG"
            )
            try:
                return function(argv)
            except KeyboardInterrupt:
                print(file=sys.stderr)
                return 130
            except BrokenPipeError:
                sys.stderr.close()
                return 0
            except PoolUnreachable as exc:
                if debug:
                    raise
                print(f"{tool}: {exc}", file=sys.stderr)
                return 1
            except ClientError as exc:
                if debug:
                    raise
                print(f"{tool}: {exc.message}", file=sys.stderr)
                return 1
            except UpdraftError as exc:
                if debug:
                    raise
                print(f"{tool}: {exc}", file=sys.stderr)
                return exc.exit_status

        return wrapper

    return decorate


def job_ids_out_of_autoformat(args: argparse.Namespace, restrictions: str = "restrictions") -> None:
    """``condor_q -af A B 12`` means attributes A B of job 12: a job id is never an attribute name."""
    if not getattr(args, "af", None):
        return
    kept = []
    for item in args.af:
        if item.replace(".", "", 1).isdigit():
            getattr(args, restrictions).append(item)
        else:
            kept.append(item)
    if not kept:
        die(sys.argv[0].rsplit("/", 1)[-1], "-af needs at least one attribute", 2)
    args.af = kept


def parse_listing(
    parser: argparse.ArgumentParser, argv: list[str] | None, restrictions: str
) -> tuple[argparse.Namespace, str]:
    """Parse a listing tool's command line: HTCondor's -af:FLAGS spelling, job ids after -af."""
    raw, flags = split_autoformat(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    job_ids_out_of_autoformat(args, restrictions)
    return args, flags


def joined_constraint(tool: str, constraints: Iterable[str]) -> str:
    """Several -constraint options mean all of them; checked before anything is sent."""
    parts = [c for c in constraints if c.strip()]
    joined = parts[0] if len(parts) == 1 else " && ".join(f"({c})" for c in parts)
    return check_constraint(tool, joined)


def print_requested_format(ads: list[dict[str, str]], args: argparse.Namespace, af_flags: str) -> bool:
    """-af, -l or -json if the user asked for one; False means print the tool's own table."""
    if getattr(args, "af", None):
        print_autoformat(ads, args.af, af_flags)
    elif getattr(args, "long", False):
        print_long(ads)
    elif getattr(args, "json", False):
        print_json(json_ads(ads))
    else:
        return False
    return True


def split_autoformat(argv: Sequence[str]) -> tuple[list[str], str]:
    """Pull HTCondor's ``-af:FLAGS`` spelling apart: returns argv with a plain ``-af`` and the flags."""
    out: list[str] = []
    flags = ""
    for arg in argv:
        for prefix in ("-autoformat:", "-af:", "--af:"):
            if arg.startswith(prefix):
                flags += arg[len(prefix) :]
                arg = "-af"
                break
        out.append(arg)
    return out, flags


# ---------------------------------------------------------------------------------------------
# Printing ads
# ---------------------------------------------------------------------------------------------
def lookup(texts: dict[str, str], name: str) -> str | None:
    found = texts.get(name)
    if found is not None:
        return found
    lowered = name.lower()
    for key, value in texts.items():
        if key.lower() == lowered:
            return value
    return None


def evaluate(texts: dict[str, str], expressions: Sequence[str]) -> list[Any]:
    """Evaluate attribute names or expressions against one ad (condor_q -af)."""
    ad: classads.ClassAd | None = None
    out: list[Any] = []
    for expression in expressions:
        text = lookup(texts, expression)
        if text is not None and classads.is_literal(text):
            out.append(classads.value_of_text(text))
            continue
        if ad is None:
            ad = classads.build(texts)
        try:
            out.append(classads.evaluate(text if text is not None else expression, ad))
        except classads.ExpressionError:
            out.append(classads.Error)
    return out


def table_values(texts: dict[str, str], names: Sequence[str]) -> dict[str, Any]:
    """Attributes for a table: plain values, None where undefined or an error.

    classad2's Undefined and Error are IntEnum members (2 and 3): left as they are, a table's
    ``isinstance(value, int)`` would read an undefined EnteredCurrentActivity as 2 seconds
    after the epoch, or an undefined TotalSubmitProcs as two jobs.
    """
    values = evaluate(texts, names)
    return {
        name: (None if isinstance(value, classads.classad2.Value) else value)
        for name, value in zip(names, values, strict=True)
    }


def print_autoformat(
    ads: Iterable[dict[str, str]], expressions: Sequence[str], flags: str = "", out: Any = None
) -> None:
    """-af with HTCondor's flags: ',' or 't' separator, 'h' header, 'j' job id first, 'l' name=value."""
    out = out or sys.stdout
    write = out.write
    separator = "," if "," in flags else ("\t" if "t" in flags else " ")
    if "h" in flags:
        write(separator.join((["ID"] if "j" in flags else []) + list(expressions)) + "\n")
    for texts in ads:
        values = [classads.format_value(v) for v in evaluate(texts, expressions)]
        if "l" in flags:
            values = [f"{name} = {value}" for name, value in zip(expressions, values, strict=False)]
        if "j" in flags:
            values.insert(0, f"{lookup(texts, 'ClusterId')}.{lookup(texts, 'ProcId')}")
        write(separator.join(values) + "\n")


def print_long(ads: Iterable[dict[str, str]], out: Any = None) -> None:
    out = out or sys.stdout
    first = True
    for texts in ads:
        if not first:
            out.write("\n")
        first = False
        for name in sorted(texts, key=str.lower):
            out.write(f"{name} = {texts[name]}\n")


def json_ads(ads: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
    out = []
    for texts in ads:
        record: dict[str, Any] = {}
        for name, text in texts.items():
            if classads.is_literal(text):
                record[name] = classads.to_python(classads.value_of_text(text))
            else:
                record[name] = text  # expressions stay expressions, as condor_q -json shows "\/Expr(...)\/"
        out.append(record)
    return out


def print_json(data: Any, out: Any = None) -> None:
    out = out or sys.stdout
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def check_constraint(tool: str, constraint: str) -> str:
    if not constraint:
        return ""
    try:
        return classads.check(constraint, "-constraint")
    except classads.ExpressionError as exc:
        die(tool, f"invalid -constraint: {exc.reason}: {constraint}", 1)
