"""`$PSVersionTable` is one table: what a PSRP client reads in the runspace pool's application
private data (MS-PSRP 2.2.2.13 APPLICATION_PRIVATE_DATA carries the server's PSVersionTable) is
what `$PSVersionTable` says inside the runspace."""

from __future__ import annotations

from cmproxy.emulator.engine import SiteRunspace
from cmproxy.emulator.psrp_shell import PSRPShell


def test_private_data_and_runspace_agree(rs: SiteRunspace) -> None:
    shell = PSRPShell("00000000-0000-0000-0000-000000000001", lambda: rs)
    table = shell.pool.application_private_data["PSVersionTable"]
    res = rs.run_script(
        "[string]$PSVersionTable.PSVersion; [string]$PSVersionTable.BuildVersion; "
        "[string]$PSVersionTable.CLRVersion; [string]$PSVersionTable.WSManStackVersion; "
        "$PSVersionTable.PSEdition"
    )
    assert res.output == [
        str(table["PSVersion"]),
        str(table["BuildVersion"]),
        str(table["CLRVersion"]),
        str(table["WSManStackVersion"]),
        table["PSEdition"],
    ]
