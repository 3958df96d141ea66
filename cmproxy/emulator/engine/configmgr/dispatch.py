"""What happens around every ConfigMgr cmdlet call, whatever the cmdlet: it needs a site drive
as current location, the emulator's injected faults and modelled costs apply to it, and its
calls are counted (`settings.cmdlet_calls`) so a fault can hit "the n-th call".

The runspace calls these for the cmdlets of the `CMDLETS` table (`table.is_cmdlet`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmproxy.emulator.engine.language.binding import Bound, CommandDef
from cmproxy.emulator.engine.language.errors import PSError, record
from cmproxy.emulator.settings import AnswerLost, EmulatorSettings

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteEngineFacts, SiteSession


def count_call(settings: EmulatorSettings, cmd: CommandDef) -> int:
    """This call's number among the calls of `cmd` (1 = its first)."""
    with settings.lock:
        call_no = settings.cmdlet_calls.get(cmd.name, 0) + 1
        settings.cmdlet_calls[cmd.name] = call_no
    return call_no


def before_cmdlet(rs: SiteSession, cmd: CommandDef, bound: Bound, call_no: int) -> None:
    """Refuse the call off a site drive; fail it when a fault says so; model a read's cost."""
    settings = rs.engine.settings
    if rs.current_drive() is None:
        raise PSError(
            record(
                "This command cannot be run from the current drive. To run this command "
                "you must first connect to a Configuration Manager drive.",
                "System.InvalidOperationException",
                cmd.cls,
                category="NotSpecified",
                exception="System.InvalidOperationException",
                command=cmd.name,
            )
        )
    faults = settings.faults
    on_server = str(bound.get("SiteSystemServerName") or "").lower()
    if (
        faults.fail_cmdlet.lower() == cmd.name.lower() and faults.fail_cmdlet_on_call == call_no
    ) or faults.fail_servers.get(on_server, "").lower() == cmd.name.lower():
        raise PSError(
            record(
                f"The SMS Provider reported an error ({faults.fail_cmdlet_error_id}).",
                faults.fail_cmdlet_error_id,
                cmd.cls,
                category="NotSpecified",
                exception="System.Management.ManagementException",
                command=cmd.name,
            )
        )
    if not cmd.writes and settings.costs.get_cmdlet:
        rs.engine.sleep(settings.costs.get_cmdlet)


def charge_rows(engine: SiteEngineFacts, cmd: CommandDef, rows: int) -> None:
    """The per-row part of a read's modelled cost (`Costs.get_per_row`, [UNCONFIRMED])."""
    costs = engine.settings.costs
    if not cmd.writes and costs.get_per_row and rows:
        engine.sleep(costs.get_rows_seconds(rows))


def after_cmdlet(settings: EmulatorSettings, cmd: CommandDef, call_no: int) -> None:
    """The lose-answer fault: the call committed, but its answer never reaches the client."""
    faults = settings.faults
    if (
        faults.lose_answer_cmdlet.lower() == cmd.name.lower()
        and faults.lose_answer_on_call == call_no
    ):
        raise AnswerLost(f"{cmd.name} call {call_no}: write committed, answer lost")
