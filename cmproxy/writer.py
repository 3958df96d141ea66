"""Execute a planned `Change` through its template and read back what the site now holds.

A change's `Invocation` names a cmdlet and its parameters (`cmproxy.invocation`); each cmdlet
has one template that calls it with bound values and then reads the object back in the same
pipeline. `AccountLookup` values become an account name that the template resolves remotely
with `Get-CMAccount` (`-ProxyAccessAccount` takes the account object, not a string);
`Secret` values go to the transport untouched, which sends them as SecureStrings.

`step_for_invocation` is pure and is what the template test checks against each param() block.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from cmproxy._exceptions import CMProxyError, ConflictError, PlanError, ValidationError
from cmproxy.invocation import AccountLookup, Invocation
from cmproxy.model import ProxySettings, Secret, SupFlags
from cmproxy.plan import Change
from cmproxy.reader import proxy_from_record, sup_flags_from_record
from cmproxy.settings import SETTINGS, proxy_key, registered, setting_for, sup_key
from cmproxy.steps import ErrorInfo, Result, Step, error_from_info


class StepRunner(Protocol):
    """What a write needs from a session: run one step, answer its result. (A `Session` is
    one; naming the protocol, not the class, keeps the session free to import the writer.)"""

    def run_step(self, step: Step) -> Result: ...


__all__ = [
    "BATCH_TEMPLATE",
    "WRITE_TEMPLATES",
    "WRITE_TEMPLATE_PARAMETERS",
    "SkippedWriteError",
    "StepRunner",
    "WriteResult",
    "apply_change",
    "batch_results",
    "batch_step",
    "batchable",
    "compare_keys",
    "proxy_key",
    "read_back",
    "step_for_invocation",
    "sup_key",
]

#: Cmdlet → template that runs it (each setting's, `cmproxy.settings`, and the account's).
WRITE_TEMPLATES: dict[str, str] = {
    **{s.cmdlet: s.template for s in SETTINGS},
    "New-CMAccount": "New-ProxyAccount",
}

#: Per cmdlet: invocation parameter → template parameter.
_PARAMETER_MAP: dict[str, Mapping[str, str]] = {
    **{s.cmdlet: s.parameters for s in SETTINGS},
    "New-CMAccount": {"SiteCode": "SiteCode", "UserName": "UserName", "Password": "Password"},
}

#: Several server proxy / SUP option writes at one site in one pipeline (`batch_step`).
BATCH_TEMPLATE = "Set-ProxyBatch"
#: Default port of Set-ServerProxy.ps1 when the invocation gives none.
_DEFAULT_PORT = 80
#: Batch column (an array of `-Items`) → its value for one write, from the parameters the
#: single-write template would get (`step_for_invocation`) and its compare keys: each column
#: is mapped here once.
_BATCH_COLUMNS: dict[str, Callable[[dict[str, Any], tuple[str, str], str], Any]] = {
    "Kind": lambda b, keys, kind: kind,
    "SiteSystemServerName": lambda b, keys, kind: str(b["SiteSystemServerName"]),
    "EnableProxy": lambda b, keys, kind: bool(b.get("EnableProxy", False)),
    "ProxyServerName": lambda b, keys, kind: str(b.get("ProxyServerName") or ""),
    "ProxyServerPort": lambda b, keys, kind: int(b.get("ProxyServerPort") or _DEFAULT_PORT),
    "ProxyAccessAccountName": lambda b, keys, kind: str(b.get("ProxyAccessAccountName") or ""),
    "UseProxy": lambda b, keys, kind: bool(b.get("UseProxy", False)),
    "UseProxyForAutoDeploymentRule": lambda b, keys, kind: bool(
        b.get("UseProxyForAutoDeploymentRule", False)
    ),
    "ProxyOk": lambda b, keys, kind: keys[0],
    "SupOk": lambda b, keys, kind: keys[1],
}

#: Template → the parameter names the Python side may bind (checked against param() blocks).
WRITE_TEMPLATE_PARAMETERS: dict[str, frozenset[str]] = {
    **{
        WRITE_TEMPLATES[cmdlet]: frozenset(mapping.values())
        for cmdlet, mapping in _PARAMETER_MAP.items()
    },
    BATCH_TEMPLATE: frozenset(
        {
            "SiteCode",
            "ReadBackBySite",
            "Items",
            "LockTimeoutMs",
            "NewAccountName",
            "NewAccountPassword",
        }
    ),
}


@attrs.frozen
class WriteResult:
    """A change as written and the value read back right after, in the same pipeline."""

    change: Change
    #: ProxySettings for a server proxy, SupFlags for SUP options, a role setting's value
    #: (`cmproxy.settings`), the account name otherwise.
    read_back: ProxySettings | SupFlags | str | object
    #: True when the read-back value is what the change asked for.
    matches: bool

    @property
    def shows_before(self) -> bool:
        """The read-back is still the value from before the write: on a lagging hierarchy the
        write is not visible yet (re-read it), rather than someone else's value."""
        setting = setting_for(self.change)
        return setting is not None and setting.same(self.read_back, self.change.before)

    def describe(self) -> str:
        verdict = "as planned" if self.matches else "DIFFERENT from the plan"
        return f"{self.change.describe()} → read back {self.read_back!r} ({verdict})"


def step_for_invocation(invocation: Invocation) -> Step:
    """The template step that performs `invocation`; refuses anything it does not know."""
    own = {s.cmdlet: s for s in registered()}  # the settings roles registered, too
    found = own.get(invocation.command)
    template = found.template if found else WRITE_TEMPLATES.get(invocation.command)
    mapping = found.parameters if found else _PARAMETER_MAP.get(invocation.command)
    if template is None or mapping is None:
        raise PlanError(
            f"cmproxy cannot execute {invocation.command}; it runs "
            f"{', '.join(sorted({*WRITE_TEMPLATES, *own}))}"
        )
    site_code = invocation.get("SiteCode")
    bound: dict[str, Any] = {}
    for name, given in invocation.parameters:
        value = given
        target = mapping.get(name)
        if target is None:
            raise PlanError(f"{invocation.command}: parameter -{name} is not supported")
        if isinstance(value, AccountLookup):
            if site_code is not None and value.site_code.upper() != str(site_code).upper():
                raise ValidationError(
                    name,
                    value.name,
                    f"the account is looked up at site {value.site_code} but the server is at "
                    f"site {site_code}; an account is registered per site",
                )
            value = value.name
        elif name == "Password" and not isinstance(value, Secret):
            raise ValidationError("Password", "********", "must be a Secret")
        bound[target] = value
    return Step.of(template, **bound)


def read_back(
    change: Change, result: Result
) -> tuple[ProxySettings | SupFlags | str | object, bool]:
    """The value the template read back after writing, and whether it matches the change."""
    records = result.records()
    if not records:
        raise PlanError(f"{change.invocation.command} on {change.target}: nothing was read back")
    return _read_back_record(change, records[-1])


def _read_back_record(
    change: Change, record: dict[str, Any]
) -> tuple[ProxySettings | SupFlags | str | object, bool]:
    setting = setting_for(change)
    if setting is not None:
        value = setting.from_record(record)
        return value, setting.same(value, change.after)
    name = str(record.get("UserName") or "")
    return name, name.lower() == str(change.after).lower()


def apply_change(session: StepRunner, change: Change) -> WriteResult:
    """Run one change through `session` and read back the result."""
    result = session.run_step(step_for_invocation(change.invocation))
    value, matches = read_back(change, result)
    return WriteResult(change=change, read_back=value, matches=matches)


# -- batches: several writes at one site in one pipeline ------------------------------------


def batchable(change: Change) -> bool:
    """True for the writes `Set-ProxyBatch.ps1` can join (server proxies and SUP options)."""
    setting = setting_for(change)
    return setting is not None and bool(setting.batch_kind)


def batch_step(
    site_code: str,
    changes: list[Change],
    *,
    read_back_by_site: bool = False,
    groups: Sequence[int] | None = None,
    new_account: Change | None = None,
) -> Step:
    """One `Set-ProxyBatch` step for `changes` (all batchable, all at `site_code`), in order.

    Each change is bound exactly as its own template would bind it (`step_for_invocation`
    checks and maps its parameters); element i of every array of `-Items` (JSON) describes
    change i.
    `read_back_by_site`: read the written servers back by listing the site's roles once (one
    Get) rather than one Get per server — cheaper when they are a good part of the site.
    `groups[i]` names change i's transaction: after a write fails, the later writes of its
    group are skipped (`SkippedWriteError`), so one transaction's writes keep their order.

    Compare-and-set: each write carries the values its server may show just before its Set
    (`compare_keys`); the template skips a server showing anything else and reports it
    (`ConflictError` from `batch_results`), in the same pipeline, without a round trip.

    `new_account` (a `CREATE_ACCOUNT` change at `site_code`): the pipeline registers that
    account before its first write unless it exists (under a lock, so the site's other
    pipelines carrying it find it rather than create it twice): a bulk run's account costs
    no round trip of its own before the writes.
    """
    columns: dict[str, list[Any]] = {name: [] for name in _BATCH_COLUMNS}
    allowed = compare_keys(changes, groups)
    for change, keys in zip(changes, allowed, strict=True):
        if not batchable(change):
            raise PlanError(f"{change.invocation.command} cannot be batched")
        if str(change.site_code).upper() != site_code.upper():
            raise PlanError(f"{change.target} is at site {change.site_code}, not {site_code}")
        bound = dict(step_for_invocation(change.invocation).parameters)
        setting = setting_for(change)
        assert setting is not None
        for name, value_of in _BATCH_COLUMNS.items():
            columns[name].append(value_of(bound, keys, setting.batch_kind))
    if groups is not None:
        columns["Group"] = list(groups)
    account: dict[str, Any] = {}
    if new_account is not None:
        if str(new_account.site_code).upper() != site_code.upper():
            raise PlanError(
                f"the account {new_account.target} is created at site {new_account.site_code}, "
                f"not {site_code}"
            )
        bound = dict(step_for_invocation(new_account.invocation).parameters)
        account = {"NewAccountName": bound["UserName"], "NewAccountPassword": bound["Password"]}
    return Step.of(
        BATCH_TEMPLATE,
        **account,
        SiteCode=site_code,
        # One JSON string: a batch is a few hundred values, which as remoting objects cost
        # both ends far more to send and parse than the writes' own work.
        Items=json.dumps(columns, separators=(",", ":")),
        ReadBackBySite=True if read_back_by_site else None,
    )


def _keys(values: Iterable[str]) -> str:
    """Keys between newlines, as the template looks them up (`"`n" + key + "`n"`)."""
    unique = list(dict.fromkeys(values))
    return "\n" + "\n".join(unique) + "\n" if unique else ""


def compare_keys(
    changes: Sequence[Change], groups: Sequence[int] | None = None
) -> list[tuple[str, str]]:
    """Per change, the server proxy and SUP option values (`_keys`, "" = not checked) its
    server may show just before the change is written: for each field its transaction (group)
    writes on that server, the value it was planned from or the one the transaction writes.
    Any other value is someone else's change. (Its own new value is allowed: a write retried
    after a lost answer, or the other field's write already made by this transaction.) A
    change planned without a before value (built by hand) leaves its field unchecked."""
    found: dict[tuple[str, int, str], list[str]] = {}
    tags = [groups[i] if groups is not None else -1 - i for i in range(len(changes))]
    unknown: set[tuple[str, int, str]] = set()
    for change, tag in zip(changes, tags, strict=True):
        setting = setting_for(change)
        if setting is None:
            continue
        where = (setting.name, tag, change.target.lower())
        if change.before is None:
            unknown.add(where)  # planned without a value to compare with
        values = found.setdefault(where, [])
        values += [setting.key(v) for v in (change.before, change.after) if v is not None]
    for where in unknown:
        found.pop(where, None)
    first, second = SETTINGS
    return [
        (
            _keys(found.get((first.name, tag, change.target.lower()), [])),
            _keys(found.get((second.name, tag, change.target.lower()), [])),
        )
        for change, tag in zip(changes, tags, strict=True)
    ]


def _conflict(record: dict[str, Any], change: Change) -> ConflictError:
    """A write the template skipped: its server showed someone else's values (the record is its
    site system row, its SUP row as `Sup`, projected as every read is; no secret: a password
    cannot be read back). A record with
    `Locked` is a server whose lock another writer held for the template's whole wait: its
    values were not compared, nothing of its transaction was written."""
    locked = record.get("Locked")
    if locked:
        return ConflictError(
            change.target, f"{change.kind.value} not written: {locked} (another cmproxy run?)"
        )
    try:
        now = proxy_from_record(record).describe()
    except CMProxyError:
        now = "an unreadable proxy"
    sup = record.get("Sup")
    if isinstance(sup, dict):
        now += f", SUP options {sup_flags_from_record(sup).to_dict()}"
    before = change.before
    planned = (
        before.describe()
        if isinstance(before, ProxySettings)
        else str(before.to_dict())
        if isinstance(before, SupFlags)
        else "?"
    )
    return ConflictError(
        change.target,
        f"{change.kind.value} was planned from {planned}; just before the write the server "
        f"showed {now}",
    )


class SkippedWriteError(CMProxyError):
    """A batched write not made because an earlier write of its group (transaction) failed."""

    def __init__(self, change: Change) -> None:
        self.change = change
        super().__init__(
            f"{change.describe()}: not made, an earlier write of its transaction failed"
        )


def _item_error(record: dict[str, Any], change: Change) -> CMProxyError:
    if record.get("FullyQualifiedErrorId") == "cmproxy:Skipped":
        return SkippedWriteError(change)
    info = ErrorInfo(
        message=str(record.get("Message") or "the write failed"),
        fully_qualified_error_id=str(record.get("FullyQualifiedErrorId") or ""),
        category=str(record.get("Category") or ""),
        target=str(record.get("TargetName") or change.target),
        command=change.invocation.command,
        exception_type=str(record.get("Reason") or ""),
    )
    return error_from_info(info)


def batch_results(changes: list[Change], result: Result) -> list[WriteResult | CMProxyError]:
    """Per change of a `batch_step`, its `WriteResult` or its own error, in the same order."""
    by_index: dict[int, dict[str, Any]] = {}
    for found in result.records():
        index = found.get("Index")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(changes):
            by_index[index] = found
    out: list[WriteResult | CMProxyError] = []
    for i, change in enumerate(changes):
        record = by_index.get(i)
        if record is None:
            out.append(
                PlanError(f"{change.invocation.command} on {change.target}: nothing was read back")
            )
        elif record.get("Kind") == "Error":
            out.append(_item_error(record, change))
        elif record.get("Kind") == "Conflict":
            out.append(_conflict(record, change))
        else:
            value, matches = _read_back_record(change, record)
            out.append(WriteResult(change=change, read_back=value, matches=matches))
    return out
