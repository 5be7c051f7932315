"""``updraft frontend import-gwms``: a glideinWMS ``frontend.xml`` as an Updraft frontend config.

The knobs carry over by name (``idle_vms_*`` become ``idle_slots_*``, which count the same
registered idle slots), with two translations: ``glideins_removal wait`` N is
``wait_cycles`` N+1 (glideinWMS fires after more than ``wait`` quiet cycles, Updraft after
``wait_cycles``), and the Python ``match_expr`` becomes ClassAd text where it is one of the
common forms; otherwise the group is written disabled with the original as a comment.
Schedds, collectors and credentials do not carry over: Updraft's frontend reads one pool, and
the CE credentials live at the factory (the summary lists them).
"""

from __future__ import annotations

import time
from typing import Any

from updraft.core.configfile import dump_yaml
from updraft.core.gwmsxml import ImportReport, Node, Untranslatable, is_true, match_expr_to_classad, parse_xml

#: <config> element -> the Updraft limits key; each has max (and curb or the other attributes)
GROUP_LIMITS = {
    "idle_glideins_per_entry": ("idle_glideins_per_entry", ("max", "reserve")),
    "idle_vms_per_entry": ("idle_slots_per_entry", ("max", "curb")),
    "idle_vms_total": ("idle_slots_total", ("max", "curb")),
    "running_glideins_per_entry": ("running_glideins_per_entry", ("max", "min", "relative_to_queue")),
    "running_glideins_total": ("running_glideins_total", ("max", "curb")),
}
FRONTEND_LIMITS = {
    "idle_vms_total": "idle_slots_total",
    "running_glideins_total": "running_glideins_total",
    "idle_vms_total_global": "idle_slots_total_global",
    "running_glideins_total_global": "running_glideins_total_global",
}
#: <config> elements handled elsewhere or without meaning here
QUIET = {"glideins_removal", "idle_glideins_lifetime", "processing_workers"}


def import_frontend(path: Any) -> tuple[str, ImportReport]:
    """The YAML text of an Updraft frontend config, and the report of what was converted."""
    report = ImportReport()
    root = parse_xml(path)
    if root.tag != "frontend":
        raise ValueError(f"{path}:{root.line}: expected a <frontend> document, found <{root.tag}>")
    top_match = root.find("match")
    header: dict[str, Any] = {
        "name": _name(root.get("frontend_name") or "imported-frontend"),
        "state_dir": "state",
        "cycle_s": float(root.get("loop_delay") or 60),
    }
    limits = _frontend_limits(root.find("config"), report)
    if limits:
        header["limits"] = limits
    config = root.find("config")
    if config is not None and config.get("ignore_down_entries"):
        header["ignore_down_entries"] = is_true(config.get("ignore_down_entries"))
    _report_frontend(root, report)
    groups: list[tuple[dict[str, Any], list[str]]] = []
    for node in (root.find("groups") or Node("", {}, "", 0)).findall("group"):
        groups.append(convert_group(node, top_match, report))
    if not groups:
        report.skipped.append(("(groups)", root.where, "the frontend has no group"))
    return render(header, groups, str(path)), report


def render(header: dict[str, Any], groups: list[tuple[dict[str, Any], list[str]]], source: str) -> str:
    lines = [
        f"# Imported from glideinWMS by `updraft frontend import-gwms` on {time.strftime('%Y-%m-%d %H:%M')}",
        f"# from: {source}",
        "# The pool (pool.url, pool.token_file) is Updraft's: set it before running.",
        "",
        dump_yaml(header, sort_keys=False, width=4096).rstrip(),
        "groups:",
    ]
    for data, comments in groups:
        lines.append("")
        lines += [f"  # {comment}" for comment in comments]
        text = dump_yaml([data], sort_keys=False, width=4096, allow_unicode=True)
        lines += ["  " + line for line in text.rstrip().splitlines()]
    return "\n".join(lines) + "\n"


def convert_group(
    node: Node, top_match: Node | None, report: ImportReport
) -> tuple[dict[str, Any], list[str]]:
    name = _name(node.get("name"))
    comments = [f"{node.where}: group {node.get('name')}"]
    data: dict[str, Any] = {"name": name}
    if not is_true(node.get("enabled", "True")):
        data["enabled"] = False
    match = node.find("match")
    _matching(top_match, match, data, comments, report, name, node)
    _group_config(node.find("config"), data, report)
    security = node.find("security")
    for credential in security.iter("credential") if security is not None else []:
        _credential(credential, report)
    for section in ("attrs", "files"):
        child = node.find(section)
        if child is not None:
            for attr in child.findall("attr") or child.children:
                report.no_equivalent(f"group <{section}> {attr.get('name') or attr.tag}")
    report.converted.append((name, node.where))
    return data, comments


def _matching(
    top: Node | None, group: Node | None, data: dict[str, Any], comments: list[str], report: ImportReport,
    name: str, node: Node,
) -> None:  # fmt: skip
    """match_expr (Python, ANDed over frontend and group), start_expr, the job and factory query_expr."""
    parts = [m for m in (top, group) if m is not None]
    python = [m.get("match_expr").strip() for m in parts if m.get("match_expr").strip() not in ("", "True")]
    if python:
        try:
            translated = [match_expr_to_classad(text) for text in python]
            data["match_expr"] = " && ".join(translated)
        except Untranslatable as exc:
            data["enabled"] = False
            comments.append(f"disabled: match_expr has no ClassAd translation ({exc}); the original:")
            comments += [f"    {text}" for text in python]
            report.disabled.append((name, node.where, f"match_expr not translated: {exc}"))
    starts = [m.get("start_expr").strip() for m in parts if m.get("start_expr").strip() not in ("", "True")]
    if starts:
        data["start_expr"] = " && ".join(f"({s})" for s in starts)
    for tag, key in (("job", "job_constraint"), ("factory", "factory_constraint")):
        expressions = []
        attrs: list[str] = []
        for m in parts:
            child = m.find(tag)
            if child is None:
                continue
            text = child.get("query_expr").strip()
            if text and text not in ("True", "true"):
                expressions.append(f"({text})")
            attrs += [a.get("name") for a in child.iter("match_attr") if a.get("name")]
            for listing in ("schedds", "collectors"):
                found = child.find(listing)
                if found is not None and found.children:
                    report.no_equivalent(f"<{tag}> <{listing}> (Updraft reads one pool; factories by name)")
        if expressions:
            data[key] = " && ".join(expressions)
        if tag == "job" and attrs:
            data["match_attrs"] = sorted(set(attrs))


def _group_config(config: Node | None, data: dict[str, Any], report: ImportReport) -> None:
    if config is None:
        return
    limits: dict[str, Any] = {}
    for child in config.children:
        if child.tag in GROUP_LIMITS:
            key, names = GROUP_LIMITS[child.tag]
            values = {n: _number(child.get(n)) for n in names if child.get(n) != ""}
            limits[key] = {n: v for n, v in values.items() if v is not None}
        elif child.tag == "glideins_removal":
            data["removal"] = _removal(child)
        elif child.tag == "idle_glideins_lifetime":
            if _number(child.get("max")):
                data["idle_lifetime_s"] = int(_number(child.get("max")) or 0)
        elif child.tag not in QUIET:
            report.no_equivalent(f"group <config> <{child.tag}>")
        if child.tag == "processing_workers":
            report.no_equivalent("group <processing_workers> (matching runs in one process)")
    for name in ("ramp_up_attenuation",):
        if config.get(name):
            data[name] = _number(config.get(name))
    if config.get("ignore_down_entries"):
        data["ignore_down_entries"] = is_true(config.get("ignore_down_entries"))
    if limits:
        data["limits"] = limits


def _removal(node: Node) -> dict[str, Any]:
    removal: dict[str, Any] = {"policy": (node.get("type") or "NO").upper()}
    wait = int(_number(node.get("wait")) or 0)
    removal["wait_cycles"] = wait + 1  # glideinWMS: after more than `wait` cycles; Updraft: after wait_cycles
    if is_true(node.get("requests_tracking", "False")):
        removal["requests_tracking"] = True
    margin = int(_number(node.get("margin")) or 0)
    if margin:
        removal["margin"] = margin
    return removal


def _frontend_limits(config: Node | None, report: ImportReport) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if config is None:
        return limits
    for child in config.children:
        if child.tag in FRONTEND_LIMITS:
            limits[FRONTEND_LIMITS[child.tag]] = {
                n: int(_number(child.get(n)) or 0) for n in ("max", "curb") if child.get(n) != ""
            }
        else:
            report.no_equivalent(f"frontend <config> <{child.tag}>")
    return limits


def _credential(node: Node, report: ImportReport) -> None:
    kind = node.get("type") or "grid_proxy"
    trust = node.get("trust_domain") or "grid"
    report.credentials[f"{kind} for trust domain {trust} (install it at the factory's entries)"] += 1


def _report_frontend(root: Node, report: ImportReport) -> None:
    security = root.find("security")
    if security is not None:
        for credential in security.iter("credential"):
            _credential(credential, report)
    for section in ("high_availability", "monitor", "stage", "work", "ccbs", "collectors", "log_retention"):
        child = root.find(section)
        if child is not None and (child.children or child.attrib):
            report.no_equivalent(f"frontend <{section}>")
    attrs = root.find("attrs")
    if attrs is not None:
        for attr in attrs.findall("attr"):
            report.no_equivalent(f"frontend <attrs> {attr.get('name')}")
    if root.get("downtimes_file"):
        report.no_equivalent("downtimes_file (use `updraft frontend downtime`)")


def _number(text: str) -> float | int | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else value


def _name(text: str) -> str:
    """Updraft's names take letters, digits, '_', '-' (and '.' for the frontend)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text) or "imported"
