"""What a change writes (`ChangeKind`): below the planner and the settings table, which both
name it (`cmproxy.plan` re-exports it, where it has always been imported from)."""

from __future__ import annotations

import enum

__all__ = ["ChangeKind"]


class ChangeKind(enum.Enum):
    """What a change writes; also its place in the plan's order (accounts first)."""

    CREATE_ACCOUNT = "create account"
    SET_SERVER_PROXY = "set server proxy"
    SET_SUP_FLAGS = "set SUP proxy options"
    #: A setting a role carries of its own, registered in `cmproxy.settings` (the invocation's
    #: cmdlet names which).
    SET_ROLE_SETTING = "set role setting"
