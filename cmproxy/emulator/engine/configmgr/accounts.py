"""Get-CMAccount / New-CMAccount."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.configmgr.common import name_ok, what_if
from cmproxy.emulator.engine.configmgr.objects import account_obj
from cmproxy.emulator.engine.configmgr.table import cmdlet
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import PSError

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext


@cmdlet(
    "Get-CMAccount",
    [ParamDef("UserName", "string", position=0, aliases=("Name",)), ParamDef("SiteCode", "string")],
)
def get_account(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    site = a.get("SiteCode") or ctx.site_from_location()
    name = a.get("UserName")
    return [
        account_obj(acc.site, acc.username)
        for acc in ctx.state.accounts(site)
        if name_ok(acc.username, name, a)
    ]


@cmdlet(
    "New-CMAccount",
    [
        ParamDef("UserName", "string", mandatory=True, aliases=("Name",)),
        ParamDef("Password", "securestring", mandatory=True, secret=True),
        ParamDef("SiteCode", "string"),
    ],
    writes=True,
)
def new_account(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    site = a.get("SiteCode") or ctx.site_from_location()
    user = a["UserName"]
    if any(acc.username.lower() == user.lower() for acc in ctx.state.accounts(site)):
        raise PSError(
            ctx.error(
                f"An object with the specified name already exists: {user}",
                "ItemAlreadyExists",
                category="ResourceExists",
                exception="System.ArgumentException",
                target=user,
            )
        )
    if what_if(ctx, user, "New"):
        return None
    pw = a["Password"].reveal()
    ctx.commit(site, lambda: ctx.state.add_account(site, user, pw))
    return account_obj(site, user)
