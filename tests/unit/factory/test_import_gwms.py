"""The glideinWMS importers: real OSG factory files (read from ../shared, as this test says),
gatekeeper forms, GLIDEIN_CPUS words, match_expr translation, and what is reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from factory.config import load_factory_config
from factory.importer import import_factory
from frontend.config import load_frontend_config
from frontend.importer import import_frontend
from updraft.core.gwmsxml import GwmsImportError, Untranslatable, match_expr_to_classad

REPO = Path(__file__).parents[3]
SHARED = (
    REPO.parent / "shared" / "glideinwms-configs"
)  # test data only: the project never reads it at run time
BIN = Path(sys.executable).parent


def entry_xml(
    gridtype: str, gatekeeper: str, attrs: str = "", extra: str = "", submit: str = "", config: str = ""
) -> str:
    return f"""<glidein factory_name="fact1" loop_delay="30"><entries>
  <entry name="E1" gridtype="{gridtype}" gatekeeper="{gatekeeper}" auth_method="grid_proxy" enabled="True" {extra}>
    <config>{config}<submit cluster_size="5" max_per_cycle="7" sleep="0"><submit_attrs>{submit}</submit_attrs></submit></config>
    <allow_frontends><allow_frontend name="fe1" security_class="frontend"/></allow_frontends>
    <attrs>
      <attr name="GLIDEIN_Site" value="SiteA" type="string" const="True" publish="True"/>
      <attr name="GLIDEIN_Supported_VOs" value="CMS,OSG" type="string"/>
      {attrs}
    </attrs>
  </entry>
</entries></glidein>
"""


def convert(tmp_path: Path, text: str) -> tuple[dict, object]:
    path = tmp_path / "glideinWMS.xml"
    path.write_text(text)
    yaml_text, report = import_factory([path])
    out = tmp_path / "factory.yaml"
    out.write_text(yaml_text)
    load_factory_config(out)  # what `updraft factory check` does
    entries = yaml.safe_load(yaml_text)["entries"]
    return (entries[0] if entries else {}), report


@pytest.mark.parametrize(
    "gridtype, gatekeeper, expected_gatekeeper, options",
    [
        ("condor", "ce01.example.org ce01.example.org:9619", "ce01.example.org:9619", {"proxy": "/etc/updraft/credentials/cms.proxy"}),
        ("condor", "schedd-a.example.org pool.example.org:9619", "pool.example.org:9619",
         {"remote_schedd": "schedd-a.example.org", "proxy": "/etc/updraft/credentials/cms.proxy"}),
        ("cream", "cream.example.org:8443/cream-pbs-cms-long", "https://cream.example.org:8443",
         {"batch_system": "pbs", "queue": "cms-long", "proxy": "/etc/updraft/credentials/cms.proxy"}),
        ("arc", "arc.example.org:8443", "https://arc.example.org:8443/arex", {"proxy": "/etc/updraft/credentials/cms.proxy"}),
        ("nordugrid", "arc.example.org", "https://arc.example.org/arex", {"proxy": "/etc/updraft/credentials/cms.proxy"}),
        ("gt2", "gk.example.org:2119/jobmanager-pbs", "gk.example.org:2119/jobmanager-pbs", {"proxy": "/etc/updraft/credentials/cms.proxy"}),
        ("gt5", "gk.example.org:/jobmanager-condor", "gk.example.org/jobmanager-condor", {"proxy": "/etc/updraft/credentials/cms.proxy"}),
    ],
)  # fmt: skip
def test_gatekeeper_forms_are_parsed(
    tmp_path: Path, gridtype, gatekeeper, expected_gatekeeper, options
) -> None:
    entry, _report = convert(tmp_path, entry_xml(gridtype, gatekeeper))
    assert entry["gatekeeper"] == expected_gatekeeper
    assert entry["options"] == options
    assert entry["allowed_frontends"] == ["fe1"] and entry["pacing"]["max_per_cycle"] == 7


def test_a_gatekeeper_with_two_words_is_refused_by_the_condor_adapter(tmp_path: Path) -> None:
    from updraft.core.configfile import ConfigError

    path = tmp_path / "factory.yaml"
    path.write_text(
        "name: f\nentries:\n  - {name: E, gridtype: condor, gatekeeper: 'ce.example.org ce.example.org:9619', allowed_frontends: ['*']}\n"
    )
    with pytest.raises(ConfigError, match="remote_schedd"):
        load_factory_config(path)


@pytest.mark.parametrize(
    "value, cpus, pilot_cpus",
    [
        ("8", 8, None),
        ("auto", None, "auto"),
        ("node", None, "node"),
        ("slot", None, "slot"),
        ("-1", None, "node"),
    ],
)
def test_glidein_cpus_as_a_string_or_a_word(tmp_path: Path, value, cpus, pilot_cpus) -> None:
    attrs = f'<attr name="GLIDEIN_CPUS" value="{value}" type="string"/>'
    entry, _ = convert(tmp_path, entry_xml("condor", "ce ce:9619", attrs))
    assert entry.get("cpus") == cpus
    assert entry.get("pilot", {}).get("cpus") == pilot_cpus


def test_rsl_submit_attributes_and_limits(tmp_path: Path) -> None:
    text = entry_xml(
        "nordugrid", "arc.example.org",
        '<attr name="GLIDEIN_Max_Walltime" value="172800" type="int"/><attr name="USE_CCB" value="True" type="string"/>',
        'rsl="(queue=cms)(count=8)(memory=16000)(runtimeenvironment=ENV/GLITE)"',
        config='<max_jobs><per_entry glideins="300" idle="30" held="10"/><default_per_frontend glideins="200" idle="20" held="5"/>'
        '<per_frontends><per_frontend name="fe1:frontend" glideins="100" idle="10" held="2"/></per_frontends></max_jobs>',
    )  # fmt: skip
    entry, report = convert(tmp_path, text)
    assert (entry["cpus"], entry["memory_mb"], entry["walltime_s"]) == (8, 16000, 172800)
    assert entry["options"]["queue"] == "cms"
    assert entry["submit_extras"] == "(runtimeenvironment=ENV/GLITE)"
    assert entry["limits"] == {"max_glideins": 300, "max_idle": 30, "max_held": 10}
    assert entry["frontend_limits"]["fe1"] == {"max_glideins": 100, "max_idle": 10, "max_held": 2}
    assert report.unsupported["USE_CCB"] == 1  # the glidein's HTCondor knob: nothing to set in Updraft
    condor, _ = convert(
        tmp_path,
        entry_xml(
            "condor",
            "ce ce:9619",
            submit='<submit_attr name="+xcount" value="4"/><submit_attr name="Request_GPUs" value="1"/>',
        ),
    )
    assert condor["cpus"] == 4 and condor["submit_extras"] == "Request_GPUs = 1"


def test_unknown_gridtypes_are_skipped_with_the_reason(tmp_path: Path) -> None:
    entry, report = convert(tmp_path, entry_xml("batch pbs", "user@host"))
    assert entry == {} and report.skipped == [
        ("E1", "glideinWMS.xml:2", "BOSCO (batch over SSH) has no Updraft adapter yet")
    ]


def test_bad_xml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text("<glidein>\n<entries>\n<entry name='a' <\n</glidein>\n")
    with pytest.raises(GwmsImportError, match=r"bad.xml:3: not valid XML"):
        import_factory([path])


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/glideinwms-configs is not beside the project")
@pytest.mark.parametrize("name", ["10-cms-cern_osg.xml", "10-noncms-osg.xml", "15-noncms-arc.xml"])
def test_the_osg_factory_files_convert_and_pass_check(tmp_path: Path, name: str) -> None:
    """The OSG factory's production entries (test data in ../shared): converted or skipped with a reason."""
    out = tmp_path / "factory.yaml"
    done = subprocess.run(
        [BIN / "updraft", "factory", "import-gwms", str(SHARED / "osg-gfactory" / name), "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    checked = subprocess.run(
        [BIN / "updraft", "factory", "check", str(out)], capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0, checked.stderr
    import json

    summary = json.loads(done.stdout.split("\nwrote ")[0])
    xml_entries = (SHARED / "osg-gfactory" / name).read_text().count("<entry ")
    assert len(summary["converted"]) + len(summary["skipped"]) == xml_entries
    assert all(item["why"] for item in summary["skipped"])
    config = load_factory_config(out)
    assert all(" " not in e.gatekeeper for e in config.entries)


# -- the frontend ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "python, classad",
    [
        ('glidein["attrs"]["GLIDEIN_Site"] in job["DESIRED_Sites"].split(",")', "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"),
        ("True", "true"),
        ('job["Owner"] == "alice" and not glidein["attrs"].get("GLIDEIN_Is_Monitor", False)',
         '((MY.Owner =?= "alice") && !(ifThenElse(isUndefined(TARGET.GLIDEIN_Is_Monitor), false, TARGET.GLIDEIN_Is_Monitor)))'),
        ('int(glidein["attrs"]["GLIDEIN_CPUS"]) >= job["RequestCpus"] or job.get("X") is None',
         "((int(TARGET.GLIDEIN_CPUS) >= MY.RequestCpus) || (MY.X =?= undefined))"),
    ],
)  # fmt: skip
def test_common_match_expr_forms_become_classad(python: str, classad: str) -> None:
    assert match_expr_to_classad(python) == classad


@pytest.mark.parametrize(
    "python", ['len(job["A"]) > 2', '[x for x in job["A"]]', "import os", 'job["A"] in "abc"']
)
def test_other_forms_are_not_translated(python: str) -> None:
    with pytest.raises(Untranslatable):
        match_expr_to_classad(python)


FRONTEND_XML = """<frontend frontend_name="vofe" loop_delay="90">
  <config><idle_vms_total curb="150" max="900"/><running_glideins_total_global curb="10" max="20"/></config>
  <match match_expr="True"><job query_expr="(JobUniverse==5)"><match_attrs/></job><factory query_expr="True"/></match>
  <security><credentials><credential absfname="/tmp/p" security_class="frontend" trust_domain="OSG" type="grid_proxy"/></credentials></security>
  <groups>
    <group name="main" enabled="True">
      <config>
        <glideins_removal margin="2" requests_tracking="True" type="IDLE" wait="4"/>
        <idle_glideins_per_entry max="80" reserve="4"/>
        <idle_vms_per_entry curb="6" max="90"/>
        <running_glideins_per_entry max="5000" min="3" relative_to_queue="1.2"/>
        <idle_glideins_lifetime max="3600"/>
      </config>
      <match match_expr='glidein["attrs"]["GLIDEIN_Site"] in job["DESIRED_Sites"].split(",")' start_expr="True">
        <factory query_expr="(GLIDEIN_Site=!=UNDEFINED)"/>
        <job query_expr="(DESIRED_Sites=!=UNDEFINED)"><match_attrs><match_attr name="DESIRED_Sites" type="string"/></match_attrs></job>
      </match>
    </group>
    <group name="odd" enabled="True">
      <match match_expr='len(job["A"]) > 1'/>
    </group>
  </groups>
</frontend>
"""


def test_a_frontend_converts_with_its_knobs_and_a_disabled_group_for_python(tmp_path: Path) -> None:
    path = tmp_path / "frontend.xml"
    path.write_text(FRONTEND_XML)
    text, report = import_frontend(path)
    out = tmp_path / "frontend.yaml"
    out.write_text(text)
    config = load_frontend_config(out)
    assert config.name == "vofe" and config.cycle_s == 90
    assert (config.limits.idle_slots_total.max, config.limits.running_glideins_total_global.curb) == (900, 10)
    main, odd = config.groups
    assert main.match_expr == "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"
    assert main.job_constraint == "((JobUniverse==5)) && ((DESIRED_Sites=!=UNDEFINED))"
    assert main.factory_constraint == "((GLIDEIN_Site=!=UNDEFINED))"
    assert (
        main.removal.policy,
        main.removal.wait_cycles,
        main.removal.margin,
        main.removal.requests_tracking,
    ) == ("IDLE", 5, 2, True)
    limits = main.limits
    assert (
        limits.idle_glideins_per_entry.max,
        limits.idle_slots_per_entry.curb,
        limits.running_glideins_per_entry.min,
    ) == (80, 6, 3)
    assert main.idle_lifetime_s == 3600
    assert not odd.enabled and 'len(job["A"]) > 1' in text  # kept as a comment, the group disabled
    assert report.credentials and report.disabled[0][0] == "odd"
