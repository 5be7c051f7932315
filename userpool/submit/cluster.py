"""A submit file -> one cluster: the cluster ad, each proc's differences, each proc's inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from updraft.core.payloads import SandboxFile
from userpool.submit.commands import check_commands
from userpool.submit.context import Context, SubmitEnvironment
from userpool.submit.inputs import Hasher, LocalInput, local_inputs
from userpool.submit.parse import Expander, SubmitFile, segments
from userpool.submit.procfill import ProcTemplate, make_template
from userpool.submit.translate import HandlerRun, merge, run_handlers

INPUT_KEYS = frozenset(
    {"executable", "transfer_executable", "transfer_input_files", "input", "initialdir", "x509userproxy"}
)


@dataclass
class ClusterSpec:
    cluster_ad: dict[str, str]
    procs: list[dict[str, str]]
    inputs: list[SandboxFile] = field(default_factory=list)
    proc_inputs: dict[int, list[SandboxFile]] = field(default_factory=dict)
    hasher: Hasher = field(default_factory=Hasher)
    warnings: list[str] = field(default_factory=list)  # accepted, but worth a line on stderr

    def ad_of(self, proc: int) -> dict[str, str]:
        ad = dict(self.cluster_ad)
        ad.update(self.procs[proc])
        return ad


def _lower(values: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in values.items()}


def build_cluster(
    file: SubmitFile,
    cluster_id: int,
    env: SubmitEnvironment,
    with_inputs: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ClusterSpec:
    parts = segments(file, env.cwd)
    names = [n for part in parts for n in part.item_names]
    warnings = check_commands(file, names)
    total = sum(len(part.procs) for part in parts)
    spec = ClusterSpec({}, [], warnings=warnings)
    cluster_ad: dict[str, str] | None = None
    cluster_inputs: list[SandboxFile] | None = None
    proc_id = 0
    for part in parts:
        if not part.procs:
            continue
        expander = Expander(part, cluster_id, proc_id)
        first = _lower(expander.constant)
        first.update(_lower(expander.proc_values(0)))
        runs = run_handlers(first, file, env)
        ad0 = merge(runs)
        if cluster_ad is None:
            cluster_ad = dict(ad0)
            spec.cluster_ad = cluster_ad
        inputs0 = _describe(spec.hasher, local_inputs(Context(first, file, env))) if with_inputs else []
        if cluster_inputs is None:
            cluster_inputs = inputs0
            spec.inputs = inputs0
        delta0 = _delta(cluster_ad, ad0)
        varying = [k.lower() for k in expander.varying_keys()]
        templated = {k.lower(): k for k in expander.templates}
        plans: dict[frozenset[str], tuple[list[int], frozenset[str]]] = {}
        templates: dict[frozenset[str], ProcTemplate | None] = {}
        for index in range(len(part.procs)):
            if index == 0 or not varying:
                ad_delta, inputs = delta0, inputs0
            else:
                live = expander.values_of(index)
                values = _lower(expander.proc_values(index, live))
                changed = frozenset(k for k in varying if values.get(k) != first.get(k))
                if not changed:
                    ad_delta, inputs = delta0, inputs0
                else:
                    plan = plans.get(changed)
                    if plan is None:
                        rerun = [i for i, run in enumerate(runs) if run.reads & changed]
                        others = frozenset(
                            n for i, run in enumerate(runs) if i not in rerun for n in run.attrs
                        )
                        plan = plans[changed] = (rerun, others)
                        templates[changed] = _template(expander, templated, changed, plan, runs, first, file, env, cluster_ad, delta0)  # fmt: skip
                    template = templates[changed]
                    real = partial(_rerun_delta, runs, plan, first, values, file, env, cluster_ad, delta0)
                    ad_delta = template.proc_delta(live, cluster_ad, real) if template else real()
                    inputs = inputs0
                    if with_inputs and changed & INPUT_KEYS:
                        merged = {**first, **values}
                        inputs = _describe(spec.hasher, local_inputs(Context(merged, file, env)))
            spec.procs.append(dict(ad_delta) if ad_delta else {})
            if inputs != cluster_inputs:
                spec.proc_inputs[proc_id] = inputs
            proc_id += 1
            if progress is not None and proc_id % 10000 == 0:
                progress(proc_id, total)
    if cluster_ad is None:
        raise file.error(None, "the queue statements make no jobs (an empty item list or queue 0)")
    return spec


def _template(
    expander: Expander,
    templated: dict[str, str],
    changed: frozenset[str],
    plan: tuple[list[int], frozenset[str]],
    runs: list[HandlerRun],
    first: dict[str, str],
    file: SubmitFile,
    env: SubmitEnvironment,
    cluster_ad: dict[str, str],
    delta0: dict[str, str],
) -> ProcTemplate | None:
    """The procs whose ``changed`` commands are all templates: their handlers run once over the
    templates (procfill says when that is right)."""
    from userpool.submit.context import HANDLERS

    if not changed <= templated.keys():
        return None
    placeholders = list(dict.fromkeys(p for key in changed for p in expander.placeholders(templated[key])))
    over_templates = {key: expander.templates[templated[key]] for key in changed}
    return make_template(
        [HANDLERS[index].function.__name__ for index in plan[0]],
        placeholders,
        partial(_rerun_delta, runs, plan, first, over_templates, file, env, cluster_ad, delta0),
    )


def _rerun_delta(
    runs: list[HandlerRun],
    plan: tuple[list[int], frozenset[str]],
    first: dict[str, str],
    changes: dict[str, str],
    file: SubmitFile,
    env: SubmitEnvironment,
    cluster_ad: dict[str, str],
    delta0: dict[str, str],
) -> dict[str, str]:
    """The proc's differences from the cluster ad, rerunning only the handlers in ``plan`` over
    the segment's first values with ``changes`` (merged here: a filled-in proc never needs them).

    ``plan`` is (handlers to rerun, attributes the other handlers write).  When the rerun
    handlers write none of those (the usual case) the change is patched into the segment's
    delta; otherwise everything is merged again.
    """
    from userpool.submit.context import HANDLERS

    indexes, others = plan
    values = {**first, **changes}
    fresh = {index: HANDLERS[index].function(Context(values, file, env)) for index in indexes}
    if any(
        not others.isdisjoint(attrs) or not others.isdisjoint(runs[i].attrs) for i, attrs in fresh.items()
    ):
        merged = merge(
            HandlerRun(fresh[i], runs[i].reads) if i in fresh else run for i, run in enumerate(runs)
        )
        return _delta(cluster_ad, merged)
    delta = dict(delta0)
    for index, attrs in fresh.items():
        for name in runs[index].attrs:
            if name not in attrs:
                if name in cluster_ad:
                    delta[name] = "undefined"
                else:
                    delta.pop(name, None)
        for name, text in attrs.items():
            if cluster_ad.get(name) != text:
                delta[name] = text
            else:
                delta.pop(name, None)
    return delta


def _delta(cluster_ad: dict[str, str], ad: dict[str, str]) -> dict[str, str]:
    delta = {name: text for name, text in ad.items() if cluster_ad.get(name) != text}
    for name in cluster_ad:
        if name not in ad:
            delta[name] = "undefined"  # a proc ad cannot remove a cluster attribute; undefined is closest
    return delta


def _describe(hasher: Hasher, items: list[LocalInput]) -> list[SandboxFile]:
    return [hasher.describe(item) for item in items]
