"""accounting_group, accounting_group_user and nice_user: whose share of the pool a job uses."""

from __future__ import annotations

from updraft.core.protocol import quote
from userpool.submit.context import Context, handler


@handler("accounting_group", "accounting_group_user", "nice_user")
def accounting(ctx: Context) -> dict[str, str]:
    group = ctx.get("accounting_group")
    nice = ctx.flag("nice_user", False)
    attrs: dict[str, str] = {}
    if nice:
        group = "nice-user"
        attrs["MaxJobRetirementTime"] = "0"
    if group is None:
        alone = ctx.get("accounting_group_user")
        if alone:  # as HTCondor: the user alone is the accounting group
            attrs.update({"AcctGroupUser": quote(alone), "AccountingGroup": quote(alone)})
        return attrs
    user = ctx.get("accounting_group_user") or ctx.env.owner
    for char in group + user:
        if char.isspace() or char in "\"'":
            raise ctx.error(
                "accounting_group",
                f"accounting group {group!r} / user {user!r} may not contain spaces or quotes",
            )
    attrs.update(
        {
            "AcctGroup": quote(group),
            "AcctGroupUser": quote(user),
            "AccountingGroup": quote(f"{group}.{user}"),
        }
    )
    return attrs
