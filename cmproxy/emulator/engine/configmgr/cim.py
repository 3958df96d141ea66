"""Get-CimInstance / Get-WmiObject for the SMS Provider's namespaces (root\\sms)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.configmgr import paths
from cmproxy.emulator.engine.configmgr.module import site_provider
from cmproxy.emulator.engine.configmgr.objects import site_obj
from cmproxy.emulator.engine.configmgr.table import console_command
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import NotSupportedByEmulator, PSError
from cmproxy.emulator.engine.language.values import ErrorRecord, PSObj

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext

CIM = "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand"


@console_command(
    "Get-CimInstance",
    [
        ParamDef("ClassName", "string", position=0),
        ParamDef("Namespace", "string"),
        ParamDef("Filter", "string"),
        ParamDef("Query", "string"),
        ParamDef("ComputerName", "string[]", aliases=("CN",)),
    ],
    cls=CIM,
)
@console_command(
    "Get-WmiObject",
    [
        ParamDef("Class", "string", position=0),
        ParamDef("Namespace", "string", aliases=("NS",)),
        ParamDef("Filter", "string"),
        ParamDef("Query", "string"),
        ParamDef("ComputerName", "string[]", aliases=("CN",)),
    ],
)
def _cim(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:

    ns = (a.get("Namespace") or "root\\cimv2").lower().replace("/", "\\")
    cls = a.get("ClassName") or a.get("Class") or ""
    if a.get("Query") or a.get("Filter"):
        raise NotSupportedByEmulator("Get-CimInstance -Query/-Filter")
    for machine in a.get("ComputerName") or []:
        if paths.is_local_machine(ctx.rs, machine):
            continue
        if machine.split(".")[0].lower() not in paths.known_machines(ctx.rs):
            # ERROR_WSMAN destination unreachable (0x80338126), as for a machine not there.
            raise PSError(
                _cim_error(
                    ctx,
                    "WinRM cannot complete the operation. Verify that the specified computer "
                    "name is valid, that the computer is accessible over the network, and that "
                    "a firewall exception for the WinRM service is enabled and allows access "
                    "from this computer. ",
                    "0x80338126",
                    "ConnectionError",
                )
            )
        if paths.second_hop_blocked(ctx.rs, machine):
            # WinRM to another machine from inside a session without delegable credentials.
            raise PSError(_cim_error(ctx, "Access is denied. ", "0x80070005", "PermissionDenied"))
    if ns.startswith("root\\sms") and ctx.engine.settings.host.provider_access_denied:
        # WBEM_E_ACCESS_DENIED: the account has no rights on the SMS Provider's namespace.
        raise PSError(_cim_error(ctx, "Access denied ", "0x80041003", "PermissionDenied"))
    if ns == "root\\sms" and cls.lower() == "sms_providerlocation":
        out = []
        local = ctx.engine.local_site
        for s in ctx.state.sites():
            if s.provider and s.code.upper() == local.upper():
                machine = site_provider(ctx.rs, s)
                out.append(
                    PSObj(
                        [
                            "Microsoft.Management.Infrastructure.CimInstance#root/sms/"
                            "SMS_ProviderLocation",
                            "Microsoft.Management.Infrastructure.CimInstance",
                            "System.Object",
                        ],
                        {
                            "Machine": machine,
                            "NamespacePath": f"\\\\{machine}\\root\\sms\\site_{s.code}",
                            "ProviderForLocalSite": True,
                            "SiteCode": s.code,
                            "PSComputerName": None,
                        },
                    )
                )
        return out
    m = re.match(r"^root\\sms\\site_(\w+)$", ns)
    if m and ctx.state.site(m.group(1)) is not None:
        if cls.lower() == "sms_site":
            return [site_obj(s, cim=True) for s in ctx.state.sites()]
        raise PSError(_cim_error(ctx, "Invalid class ", "0x80041010", "MetadataError"))
    if ns.startswith("root\\sms"):
        raise PSError(_cim_error(ctx, "Invalid namespace ", "0x8004100e", "MetadataError"))
    raise NotSupportedByEmulator(f"Get-CimInstance in namespace '{ns}'")


def _cim_error(ctx: SiteCallContext, message: str, hresult: str, category: str) -> ErrorRecord:
    return ctx.error(
        message,
        f"HRESULT {hresult}",
        category=category,
        exception="Microsoft.Management.Infrastructure.CimException",
    )
