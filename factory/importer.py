"""``updraft factory import-gwms``: a glideinWMS factory's entries as an Updraft factory config.

glideinWMS keeps its entries in ``glideinWMS.xml`` and, at OSG, in ``config.d/*.xml``: one
``<entry>`` per CE with its gridtype, gatekeeper, ``<attrs>``, limits, pacing and submit
attributes.  Each entry becomes an Updraft entry, or is listed as skipped with the reason;
every setting that has no Updraft equivalent is counted for the summary.  Gatekeepers are
parsed, never copied: HTCondor-CE's ``"<schedd> <collector>:9619"``, CREAM's
``host:port/cream-<batch>-<queue>``, ARC's host or URL, GRAM's contact string.

The credential model differs: in glideinWMS the frontend sends the CE credential with each
request, per VO; in Updraft the factory holds one per entry.  Each entry therefore says which
credential it needs (``options.proxy`` or ``options.token_file``, under
/etc/updraft/credentials/ by VO), and the summary counts them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.config import TYPED_ATTRIBUTES
from updraft.core import protocol
from updraft.core.configfile import dump_yaml
from updraft.core.gwmsxml import GwmsImportError, ImportReport, Node, is_true, parse_xml

CREDENTIALS_DIR = "/etc/updraft/credentials"
GRIDTYPES = {
    "condor": "condor",
    "cream": "cream",
    "arc": "arc",
    "nordugrid": "arc",
    "gt2": "gram",
    "gt5": "gram",
}
#: the glidein's own HTCondor configuration: meaningless for an Updraft pilot, which is not a startd
CONDOR_KNOBS = re.compile(
    r"^(CONDOR_.*|USE_CCB|USE_MATCH_AUTH|.*_DEBUG|UPDATE_COLLECTOR_WITH_TCP|ENABLE_IPV6|PREFER_IPV4|TCP_KEEPALIVE_INTERVAL"
    r"|X509_CERT_DIR|PATH|LD_LIBRARY_PATH|PYTHONPATH|OSG_GRID|RESERVED_DISK|SINGULARITY_.*|GLIDEIN_SINGULARITY_.*"
    r"|GLIDEIN_OVERLOAD_.*|GLIDEIN_DEBUG_.*|GLIDEIN_Resource_Slots|GLIDEIN_Retire_Time_Spread|GLIDEIN_DISK"
    r"|GLIDEIN_Glexec_Use|GLIDEIN_GLEXEC_VOs|GLIDEIN_Req_MUPJ_gLExec|GLIDEIN_Expose_Grid_Env|GLIDEIN_Is_Long"
    r"|GLIDEIN_MaxMemMBs_Estimate|Site_Req_Explicit_Auth|VOS_USING_SE_.*|GLIDEIN_SE_.*)$"
)
#: the glideinWMS attributes that are typed entry settings in Updraft (GLIDEIN_CPUS has its own words)
TYPED = {attribute: name for name, attribute in TYPED_ATTRIBUTES.items() if name != "cpus"}


@dataclass
class Converted:
    """One entry, as the YAML mapping to write and the comment lines above it."""

    data: dict[str, Any]
    comments: list[str] = field(default_factory=list)


def xml_files(paths: list[Path]) -> list[Path]:
    """Files as given; a directory gives its *.xml (glideinWMS.xml first, then config.d's, by name)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.xml"), key=lambda p: (p.name != "glideinWMS.xml", str(p)))
            if not found:
                raise GwmsImportError(f"{path}: no *.xml file in the directory")
            out += found
        else:
            out.append(path)
    return out


def import_factory(paths: list[Path]) -> tuple[str, ImportReport]:
    """The YAML text of an Updraft factory config, and the report of what was converted."""
    report = ImportReport()
    roots = [parse_xml(path) for path in xml_files(paths)]
    main = next((r for r in roots if r.get("factory_name")), None)
    global_attrs = _attrs(main.find("attrs")) if main is not None and main.find("attrs") else {}
    converted: list[Converted] = []
    seen: dict[str, str] = {}  # entry name -> where it was converted from
    for root in roots:
        for node in root.iter("entry"):
            name = node.get("name")
            if name in seen:
                report.skipped.append(
                    (name, node.where, f"an entry of this name was converted already ({seen[name]})")
                )
                continue
            entry = convert_entry(node, global_attrs, report)
            if entry is not None:
                seen[name] = node.where
                converted.append(entry)
    if main is not None:
        _report_factory_settings(main, report)
    header = {
        "name": (main.get("factory_name") if main is not None else "") or "imported-factory",
        "state_dir": "state",
        "cycle_s": float(main.get("loop_delay", "60")) if main is not None else 60.0,
    }
    return render(header, converted, report, [str(p) for p in paths]), report


def render(header: dict[str, Any], entries: list[Converted], report: ImportReport, sources: list[str]) -> str:
    lines = [
        f"# Imported from glideinWMS by `updraft factory import-gwms` on {time.strftime('%Y-%m-%d %H:%M')}",
        f"# from: {', '.join(sources)}",
        "# Each entry says where it came from and which credential it needs; check with",
        "#   updraft factory check <this file>",
        "",
        dump_yaml(header, sort_keys=False).rstrip(),
        "entries:" if entries else "entries: []",
    ]
    for entry in entries:
        lines.append("")
        lines += [f"  # {comment}" for comment in entry.comments]
        text = dump_yaml([entry.data], sort_keys=False, width=4096, allow_unicode=True)
        lines += ["  " + line for line in text.rstrip().splitlines()]
    if report.skipped:
        lines += ["", "# Skipped:"]
        lines += [f"#   {name} ({where}): {why}" for name, where, why in report.skipped]
    return "\n".join(lines) + "\n"


# -- one entry ------------------------------------------------------------------------------------
def convert_entry(
    node: Node, global_attrs: dict[str, tuple[str, Node]], report: ImportReport
) -> Converted | None:
    name, gridtype = node.get("name"), node.get("gridtype")
    kind = GRIDTYPES.get(gridtype)
    if kind is None:
        why = {
            "batch pbs": "BOSCO (batch over SSH) has no Updraft adapter yet",
            "ec2": "cloud (EC2) entries have no Updraft adapter",
            "gce": "cloud (GCE) entries have no Updraft adapter",
        }.get(gridtype, f"gridtype {gridtype!r} has no Updraft adapter")
        report.skipped.append((name, node.where, why))
        return None
    out = Converted({"name": name, "gridtype": kind})
    out.comments.append(f"{node.where}: entry {name} (gridtype {gridtype})")
    if node.get("comment"):
        out.comments.append(f"glideinWMS comment: {node.get('comment')}")
    data = out.data
    if not is_true(node.get("enabled", "True")):
        data["enabled"] = False
    attrs = {**global_attrs, **_attrs(node.find("attrs"))}
    options: dict[str, Any] = {}
    problem = _gatekeeper(node, kind, data, options, out)
    if problem:
        report.skipped.append((name, node.where, problem))
        return None
    _attributes(attrs, data, out, report)
    _rsl(node.get("rsl"), gridtype, kind, data, options, report)
    _submit_attrs(node, kind, data, options, report)
    _config(node, data, out, report)
    for comment in out.comments:
        if comment.startswith("disabled:"):
            report.disabled.append((name, node.where, comment[len("disabled: ") :]))
    _credential(node, kind, attrs, options, out, report)
    for setting in ("trust_domain", "verbosity", "work_dir"):
        if node.get(setting) and node.get(setting) not in (".", "std", "grid", "auto", "AUTO"):
            report.no_equivalent(f"entry {setting}")
    squid = node.get("proxy_url")
    if squid and squid != "OSG":
        data["squid"] = squid
    for section in ("infosys_refs", "monitorgroups", "files"):
        child = node.find(section)
        if child is not None and child.children:
            report.no_equivalent(f"<{section}>")
    allowed = [
        f.get("name") for f in (node.find("allow_frontends") or Node("", {}, "", 0)).children if f.get("name")
    ]
    data["allowed_frontends"] = sorted(set(allowed)) or ["*"]
    if options:
        data["options"] = options
    report.converted.append((name, node.where))
    return out


def _attrs(node: Node | None) -> dict[str, tuple[str, Node]]:
    """<attr name= value= type=> -> name -> (value, the node)."""
    if node is None:
        return {}
    return {a.get("name"): (a.get("value"), a) for a in node.findall("attr") if a.get("name")}


def _gatekeeper(node: Node, kind: str, data: dict[str, Any], options: dict[str, Any], out: Converted) -> str:
    """Parse the gatekeeper of each form into Updraft's; the text of a problem, or ''."""
    given = node.get("gatekeeper").strip()
    if not given:
        return "no gatekeeper"
    if kind == "condor":
        parts = given.split()
        if len(parts) > 2:
            return f"gatekeeper {given!r}: expected '<schedd> <collector>:port'"
        collector = parts[-1]
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", collector):
            return f"gatekeeper {given!r}: the collector is not host[:port]"
        data["gatekeeper"] = collector
        schedd = parts[0] if len(parts) == 2 else ""
        if schedd and schedd != collector.split(":")[0]:
            options["remote_schedd"] = schedd
    elif kind == "cream":
        match = re.fullmatch(r"(?:https://)?([^/\s]+)/cream-([A-Za-z0-9_]+)-(\S+)", given)
        if match is None:
            return f"gatekeeper {given!r}: expected host:port/cream-<batch>-<queue>"
        host = match.group(1) if ":" in match.group(1) else match.group(1) + ":8443"
        data["gatekeeper"] = f"https://{host}"
        options["batch_system"], options["queue"] = match.group(2), match.group(3)
    elif kind == "arc":
        if given.startswith("https://"):
            data["gatekeeper"] = given
        else:
            host = re.split(r"[/\s]", given)[0]
            data["gatekeeper"] = f"https://{host}/arex"
        if node.get("gridtype") == "nordugrid":
            out.comments.append(
                "nordugrid (the ARC CE's gridftp interface): mapped to the same CE's REST interface (ARC 6 or later)"
            )
    else:  # gram: host[:port]/jobmanager-<lrms>, as GRAM takes it
        given = re.sub(r"^([^:/]+):/", r"\1/", given)  # "host:/jobmanager-x": the default port
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9_.-]+)?", given):
            return f"gatekeeper {given!r}: expected host[:port]/jobmanager-<lrms>"
        data["gatekeeper"] = given
        if node.get("gridtype") == "gt2":
            out.comments.append(
                "gt2: Updraft's GRAM adapter speaks GRAM5, which GRAM2 gatekeepers of the same CE answer"
            )
    return ""


def _attributes(
    attrs: dict[str, tuple[str, Node]], data: dict[str, Any], out: Converted, report: ImportReport
) -> None:
    attributes: dict[str, Any] = {}
    pilot: dict[str, Any] = {}
    for name, (value, node) in sorted(attrs.items()):
        kind = node.get("type", "string")
        if not is_true(node.get("publish", "True")) or not is_true(node.get("const", "True")):
            report.no_equivalent("attr const/publish flags (every Updraft attribute is published and fixed)")
        if name == protocol.ATTR_GLIDEIN_CPUS:
            _cpus(value, data, pilot, report)
        elif name in TYPED and not value.strip():
            continue  # not said: the pilot finds out
        elif name in TYPED:
            number = _int(value)
            if number is None:
                report.no_equivalent(f"{name} (not a whole number)")
            else:
                data[TYPED[name]] = number
        elif name == "GLEXEC_BIN":
            data["glexec"] = (
                "none" if value.upper() in ("NONE", "") else (value if value.startswith("/") else "auto")
            )
        elif name == "GLIDEIN_Retire_Time":
            pilot["_retire"] = _int(value)
        elif name == "GLIDEIN_Job_Max_Time" and _int(value):
            pilot["job_max_runtime_s"] = _int(value)
        elif CONDOR_KNOBS.match(name):
            report.no_equivalent(name)
        elif kind == "expr":
            report.no_equivalent(f"{name} (an expression attribute)")
        elif kind == "int":
            number = _int(value)
            attributes[name] = number if number is not None else value
        else:
            attributes[name] = value
    retire = pilot.pop("_retire", None)
    walltime = data.get("walltime_s", 0)
    if retire:
        if walltime and retire < walltime:
            pilot["retire_before_die_s"] = walltime - retire  # ToRetire = start + retire time
        else:
            report.no_equivalent("GLIDEIN_Retire_Time (without a longer GLIDEIN_Max_Walltime)")
    if attributes:
        data["attributes"] = attributes
    if pilot:
        data["pilot"] = pilot


def _cpus(value: str, data: dict[str, Any], pilot: dict[str, Any], report: ImportReport) -> None:
    """GLIDEIN_CPUS: a number (often typed as a string), or auto / node / slot (and 0, -1)."""
    text = value.strip().lower()
    word = {"0": "auto", "-1": "node"}.get(text, text)
    if word in ("auto", "node", "slot"):
        pilot["cpus"] = word  # the pilot counts them; the factory counts 1 per glidein
    elif (_int(text) or 0) > 0:
        data["cpus"] = _int(text)
    else:
        report.no_equivalent(f"GLIDEIN_CPUS {value!r}")


def _int(value: str) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


_RSL_PART = re.compile(r'\(\s*([A-Za-z_]+)\s*=\s*("[^"]*"|[^()]*)\)')


def _rsl(
    rsl: str, gridtype: str, kind: str, data: dict[str, Any], options: dict[str, Any], report: ImportReport
) -> None:
    """The entry's rsl: JDL for CREAM, xRSL for nordugrid, RSL for GRAM; what the adapter sets is taken out."""
    rsl = rsl.strip()
    if not rsl:
        return
    if kind == "cream":
        kept = []
        for part in (p.strip() for p in rsl.split(";") if p.strip()):
            key, _, value = part.partition("=")
            if key.strip() in ("CPUNumber", "SMPGranularity") and _int(value):
                data.setdefault("cpus", _int(value))
            else:
                kept.append(part)
        if kept:
            data["submit_extras"] = "; ".join(kept)
        return
    if kind not in ("arc", "gram") or not _RSL_PART.search(rsl):
        report.no_equivalent(f"rsl ({gridtype})")
        return
    kept = []
    for key, value in _RSL_PART.findall(rsl):
        bare = value.strip().strip('"')
        lowered, number = key.lower(), _int(bare) or 0
        if lowered == "queue" and kind == "arc":
            options["queue"] = bare
        elif lowered == "count" and number:
            data.setdefault("cpus", number)
        elif lowered in ("memory", "maxmemory") and number:
            data.setdefault("memory_mb", number)
        elif lowered == "maxwalltime" and number:
            data.setdefault("walltime_s", number * 60)
        elif lowered == "jobtype":
            continue  # the GRAM adapter sets it with count
        else:
            kept.append(f"({key}={value.strip()})")
    if kept:
        data["submit_extras"] = "".join(kept)


def _submit_attrs(
    node: Node, kind: str, data: dict[str, Any], options: dict[str, Any], report: ImportReport
) -> None:
    """<submit_attr name= value=>: the Condor-G submit lines glideinWMS adds for this entry."""
    extras: list[str] = []
    for attr in node.iter("submit_attr"):
        name, value = attr.get("name"), attr.get("value")
        lowered, number = name.lower().lstrip("+"), _int(value) or 0
        if lowered == "xcount" or (kind == "arc" and lowered == "request_cpus"):
            if number:
                data.setdefault("cpus", number)
        elif lowered == "maxmemory" or (kind == "arc" and lowered == "request_memory"):
            if number and data.get("memory_mb", number) != number:
                report.no_equivalent(f"{name} beside GLIDEIN_MaxMemMBs (Updraft has one memory setting)")
            elif number:
                data.setdefault("memory_mb", number)
        elif lowered == "maxwalltime" and number:
            data.setdefault("walltime_s", number * 60)
        elif kind == "arc" and lowered == "batch_queue":
            options["queue"] = value.strip('"')
        elif kind == "arc" and lowered == "arc_rte":
            extras += [f'(runtimeenvironment="{rte.strip()}")' for rte in value.split(",") if rte.strip()]
        elif kind == "condor" and lowered != "glideinskipidleremoval":
            extras.append(f"{name} = {value}")
        else:
            report.no_equivalent(f"submit_attr {name} ({kind})")
    if extras:
        joiner = "\n" if kind == "condor" else ""
        current = data.get("submit_extras", "")
        data["submit_extras"] = joiner.join([current, *extras] if current else extras)


def _config(node: Node, data: dict[str, Any], out: Converted, report: ImportReport) -> None:
    """<config>: limits per entry and per frontend, submission, removal and release pacing."""
    config = node.find("config")
    if config is None:
        return
    jobs = config.find("max_jobs")
    if jobs is not None:
        per_entry = jobs.find("per_entry")
        if per_entry is not None:
            data["limits"] = _limits(per_entry, data, out)
        per_frontend: dict[str, Any] = {}
        default = jobs.find("default_per_frontend")
        if default is not None:
            per_frontend["default"] = _limits(default, data, out)
        for limit in jobs.iter("per_frontend"):
            frontend = limit.get("name").split(":")[0]  # glideinWMS keys them frontend:security_class
            if ":" in limit.get("name"):
                report.no_equivalent("per_frontend security class (limits are per frontend)")
            per_frontend[frontend] = _limits(limit, data, out)
        if per_frontend:
            data["frontend_limits"] = per_frontend
    pacing: dict[str, int] = {}
    for tag in ("submit", "remove", "release"):
        child = config.find(tag)
        if child is not None and child.get("sleep") not in ("", "0", "0.0"):
            report.no_equivalent(f"<{tag} sleep> (Updraft does not sleep between calls)")
    for tag, key, field_name in (
        ("submit", "cluster_size", "cluster_size"), ("submit", "max_per_cycle", "max_per_cycle"),
        ("remove", "max_per_cycle", "remove_max_per_cycle"), ("release", "max_per_cycle", "release_max_per_cycle"),
    ):  # fmt: skip
        child = config.find(tag)
        number = _int(child.get(key)) if child is not None else None
        if number is not None and number > 0:
            pacing[field_name] = number
    submit = config.find("submit")
    if submit is not None and submit.get("slots_layout") not in ("", "fixed"):
        report.no_equivalent("<submit slots_layout>")
    if pacing:
        data["pacing"] = pacing
    restrictions = config.find("restrictions")
    if restrictions is not None and any(is_true(v) for v in restrictions.attrib.values()):
        report.no_equivalent("<restrictions> (require_voms_proxy, require_glidein_glexec_use)")
    codes = (
        node.get("recoverable_exitcodes")
        or (config.find("recoverable_exitcodes") or Node("", {}, "", 0)).text
    )
    if codes.strip():
        data["held"] = {"recoverable_exitcodes": codes.strip()}


def _limits(node: Node, data: dict[str, Any], out: Converted) -> dict[str, int]:
    limits = {}
    for xml_name, name in (("glideins", "max_glideins"), ("idle", "max_idle"), ("held", "max_held")):
        value = _int(node.get(xml_name))
        if value is None:
            continue
        if value == 0:  # glideinWMS: nothing may be submitted; Updraft's 0 is "no limit"
            data["enabled"] = False
            out.comments.append(f"disabled: {node.tag} {xml_name}=0 means nothing may run in glideinWMS")
            continue
        limits[name] = value
    return limits


def _credential(
    node: Node, kind: str, attrs: dict[str, tuple[str, Node]], options: dict[str, Any], out: Converted,
    report: ImportReport,
) -> None:  # fmt: skip
    """Which credential the entry needs, where the factory will look for it."""
    method = node.get("auth_method", "grid_proxy")
    vos = attrs.get(protocol.ATTR_GLIDEIN_SUPPORTED_VOS, ("", node))[0]
    vo = (re.split(r"[,\s]+", vos.strip())[0] if vos.strip() else "vo").lower()
    methods = set(re.split(r"[+;,]", method))
    if "project_id" in methods:
        report.no_equivalent("auth_method project_id")
    if "scitoken" in methods and kind in ("condor", "arc"):
        options["token_file"] = f"{CREDENTIALS_DIR}/{vo}.scitoken"
        what = f"a SciToken of {vo.upper()} for the CE"
    else:
        if "scitoken" in methods:
            out.comments.append(f"auth_method {method}: a {kind} CE takes an X.509 proxy in Updraft")
        options["proxy"] = f"{CREDENTIALS_DIR}/{vo}.proxy"
        what = f"an X.509 proxy of {vo.upper()}"
    out.comments.append(f"credential: {what} (glideinWMS auth_method {method}; its frontend sent it)")
    report.credentials[what] += 1


def _report_factory_settings(main: Node, report: ImportReport) -> None:
    for section in ("monitor", "security", "stage", "submit", "log_retention", "monitor_footer"):
        if main.find(section) is not None:
            report.no_equivalent(f"factory <{section}>")
