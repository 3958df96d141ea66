"""Saved plans: `cmproxy plan -f FILE --out PLAN` writes one, `cmproxy apply PLAN` applies it
only if the site still gives the same plan (as terraform refuses a stale saved plan).

A plan file is JSON: the desired-state text it was made from (which never holds a password:
accounts name a variable or a prompt), the endpoint and site code it was made against, and
the plan itself (`BulkPlan.to_dict()`, secrets masked). Applying it reads the site again,
plans the same desired state, and refuses with the differences when the two plans differ.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cmproxy
from cmproxy import BulkPlan
from cmproxy.cli.errors import UsageError

__all__ = ["FORMAT", "SavedPlan", "differences", "load_plan", "save_plan"]

FORMAT = "cmproxy-plan/1"


class SavedPlan:
    """A plan file as read back."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @property
    def desired_text(self) -> str:
        return str(self.data["desired"])

    @property
    def source(self) -> str:
        return str(self.data.get("desired_file") or self.path)

    @property
    def plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = self.data["plan"]
        return plan

    @property
    def endpoint(self) -> str:
        return str(self.data.get("endpoint", ""))

    @property
    def site_code(self) -> str | None:
        code = self.data.get("site_code")
        return str(code) if code else None


def save_plan(
    out: Path,
    *,
    desired_file: Path,
    desired_text: str,
    bulk: BulkPlan,
    made_on: tuple[str, str | None],
) -> None:
    """Write the plan file (readable by its owner only: it names servers and accounts).
    `made_on`: the endpoint and site code of the session that planned it."""
    endpoint, site_code = made_on
    data = {
        "format": FORMAT,
        "cmproxy": cmproxy.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "endpoint": endpoint,
        "site_code": site_code,
        "desired_file": str(desired_file),
        "desired": desired_text,
        "plan": bulk.to_dict(),
    }
    text = json.dumps(data, indent=2, default=str) + "\n"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def load_plan(path: Path) -> SavedPlan:
    """Read a plan file written by `cmproxy plan --out`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path} is not a cmproxy plan file: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(
            f'{path} is not a cmproxy plan file (no "format": "{FORMAT}"); make one with '
            "`cmproxy plan -f FILE --out PLAN`"
        )
    return SavedPlan(path, data)


def _changes(plan: dict[str, Any]) -> dict[tuple[str, str, str], list[Any]]:
    """Per (endpoint, kind, target): the fields before → after."""
    found: dict[tuple[str, str, str], list[Any]] = {}
    for provider in plan.get("providers", []):
        for change in provider["plan"]["changes"]:
            key = (provider["endpoint"], change["kind"], change["target"].lower())
            found[key] = [(f["field"], f["before"], f["after"]) for f in change["fields"]]
    return found


def _fields(fields: list[Any]) -> str:
    return "; ".join(
        f"{name}: {_shown(before)} → {_shown(after)}" for name, before, after in fields
    )


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the saved plan and the plan made now, one line per change."""
    old, new = _changes(saved), _changes(now)
    lines: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        _endpoint, kind, target = key
        what = f"{kind.lower().replace('_', ' ')} on {target}"
        if key not in new:
            lines.append(f"{what}: planned ({_fields(old[key])}), no longer needed")
        elif key not in old:
            lines.append(f"{what}: needed now ({_fields(new[key])}), not in the saved plan")
        elif old[key] != new[key]:
            lines.append(f"{what}: planned {_fields(old[key])}; now {_fields(new[key])}")
    return lines
