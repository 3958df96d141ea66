# Copyright (c) cmproxy contributors
# MIT License (see LICENSE in the collection root; SPDX-License-Identifier: MIT)

"""What the cmproxy.configmgr modules share: connection options, the SDK import guard, and a
run-a-desired-state helper with check mode, diff and structured errors.

A thin face (architecture principle 12): everything below calls cmproxy's public API only
(names in `cmproxy.__all__`). cmproxy is imported inside the guarded try, never elsewhere at
module level, so a host without cmproxy gets `missing_required_lib('cmproxy')`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import traceback
from collections.abc import Callable
from typing import Any, TypeAlias

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    import cmproxy
except ImportError:
    cmproxy = None
    HAS_CMPROXY = False
    CMPROXY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_CMPROXY = True
    CMPROXY_IMPORT_ERROR = None

MASK = "********"


def _env(*names: str) -> tuple[Any, list[str]]:
    return (env_fallback, list(names))


#: Options named like the ansible.builtin.psrp connection plugin's; ConnectionInfo.from_ansible()
#: maps them (cmproxy.connection.ANSIBLE_OPTION_NAMES, checked by tests/ansible).
PSRP_OPTIONS: dict[str, dict[str, Any]] = {
    "remote_addr": {"type": "str", "aliases": ["cm_server"], "fallback": _env("CMPROXY_SERVER")},
    "remote_user": {
        "type": "str",
        "aliases": ["cm_user", "cm_username"],
        "fallback": _env("CMPROXY_USERNAME"),
    },
    "remote_password": {
        "type": "str",
        "no_log": True,
        "aliases": ["cm_password"],
        "fallback": _env("CMPROXY_PASSWORD"),
    },
    "port": {"type": "int", "aliases": ["cm_port"], "fallback": _env("CMPROXY_PORT")},
    "protocol": {"type": "str", "choices": ["http", "https"], "fallback": _env("CMPROXY_SCHEME")},
    "path": {"type": "str", "fallback": _env("CMPROXY_PATH")},
    "auth": {
        "type": "str",
        "choices": ["negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate"],
        "fallback": _env("CMPROXY_AUTH"),
    },
    "cert_validation": {"type": "str", "fallback": _env("CMPROXY_CERT_VALIDATION")},
    "ca_cert": {
        "type": "path",
        "aliases": ["cert_trust_path"],
        "fallback": _env("CMPROXY_CA_CERT"),
    },
    "message_encryption": {
        "type": "str",
        "choices": ["auto", "always", "never"],
        "fallback": _env("CMPROXY_MESSAGE_ENCRYPTION"),
    },
    "connection_timeout": {"type": "float", "fallback": _env("CMPROXY_CONNECTION_TIMEOUT")},
    "read_timeout": {"type": "float", "fallback": _env("CMPROXY_READ_TIMEOUT")},
    "operation_timeout": {"type": "float", "fallback": _env("CMPROXY_OPERATION_TIMEOUT")},
    "proxy": {"type": "str", "fallback": _env("CMPROXY_PROXY")},
    "ignore_proxy": {"type": "bool", "fallback": _env("CMPROXY_IGNORE_PROXY")},
    "certificate_pem": {"type": "path", "fallback": _env("CMPROXY_CERTIFICATE_PEM")},
    "certificate_key_pem": {
        "type": "path",
        "no_log": False,  # a file name, not the key
        "fallback": _env("CMPROXY_CERTIFICATE_KEY_PEM"),
    },
    "configuration_name": {"type": "str", "fallback": _env("CMPROXY_CONFIGURATION_NAME")},
    "negotiate_hostname_override": {
        "type": "str",
        "fallback": _env("CMPROXY_NEGOTIATE_HOSTNAME_OVERRIDE"),
    },
}

#: cmproxy's own connection settings (ConnectionInfo fields the psrp plugin does not have).
CMPROXY_OPTIONS: dict[str, dict[str, Any]] = {
    "allow_basic_over_http": {"type": "bool", "fallback": _env("CMPROXY_ALLOW_BASIC_OVER_HTTP")},
    "site_code": {"type": "str", "fallback": _env("CMPROXY_SITE_CODE")},
    # No choices: cmproxy checks the name against its transports and fails the task naming them.
    "transport": {"type": "str", "fallback": _env("CMPROXY_TRANSPORT")},
    "module_path": {"type": "str", "fallback": _env("CMPROXY_MODULE_PATH")},
    "provider_machine_name": {"type": "str", "fallback": _env("CMPROXY_PROVIDER_MACHINE_NAME")},
    "max_pools": {"type": "int", "fallback": _env("CMPROXY_MAX_POOLS")},
    "account_max_shells": {"type": "int", "fallback": _env("CMPROXY_ACCOUNT_MAX_SHELLS")},
    "quota_wait": {"type": "float", "fallback": _env("CMPROXY_QUOTA_WAIT")},
}

JOURNAL_OPTIONS: dict[str, dict[str, Any]] = {"journal_path": {"type": "path"}}


def connection_argument_spec() -> dict[str, dict[str, Any]]:
    """A fresh copy of the connection options, to merge into a module's argument_spec."""
    spec: dict[str, dict[str, Any]] = {}
    for name, option in {**PSRP_OPTIONS, **CMPROXY_OPTIONS}.items():
        spec[name] = dict(option)
    return spec


def require_cmproxy(module: AnsibleModule) -> None:
    if not HAS_CMPROXY:
        module.fail_json(msg=missing_required_lib("cmproxy"), exception=CMPROXY_IMPORT_ERROR)


_TRUE = {"validate", "true", "yes", "on", "1", "y"}
_FALSE = {"ignore", "false", "no", "off", "0", "n"}


def connection_info(module: AnsibleModule) -> Any:
    """The module's connection options as a `cmproxy.ConnectionInfo` (fails the task if bad)."""
    params = module.params
    if not params.get("remote_addr"):
        module.fail_json(
            msg="remote_addr (cm_server) is not set: give the SMS Provider's host name as an "
            "option, through module_defaults for group/cmproxy.configmgr.configmgr, or in the "
            "CMPROXY_SERVER environment variable",
            error={"type": "ValidationError", "field": "remote_addr", "value": None, "rule": None},
        )
    options = {name: params.get(name) for name in PSRP_OPTIONS}
    validation = options.get("cert_validation")
    if isinstance(validation, str):
        text = validation.strip().lower()
        options["cert_validation"] = (
            "validate" if text in _TRUE else "ignore" if text in _FALSE else validation
        )
    overrides = {k: params[k] for k in CMPROXY_OPTIONS if params.get(k) is not None}
    try:
        return cmproxy.ConnectionInfo.from_ansible(options, **overrides)
    except cmproxy.CMProxyError as error:
        fail_with(module, error)
    return None  # not reached: fail_json exits


# -- errors ---------------------------------------------------------------------------------

#: ConnectionInfo fields whose option has another name (cmproxy.connection.ANSIBLE_OPTION_NAMES
#: the other way round; checked by tests/ansible).
CONNECTION_FIELDS = {
    "server": "remote_addr",
    "username": "remote_user",
    "password": "remote_password",
    "scheme": "protocol",
}

#: An SDK field path that points into one of DesiredState's lists, e.g. `sup_flags[0].server`.
_INDEXED = re.compile(r"^(?P<list>proxies|sup_flags)\[(?P<n>\d+)\](?:\.(?P<rest>.+))?$")

#: A module's own wording of a refusal: the option at fault, its value, the server it is
#: about, and the message (after the "[rule] " prefix).
Explained: TypeAlias = "tuple[str, Any, str | None, str]"

#: The SUP options as the SDK describes them (SupFlags.describe: "sync=on, ADR=off").
SUP_OPTIONS = {"use_proxy": "sync", "use_proxy_for_adr": "ADR"}


def sup_options_on(text: str) -> list[str]:
    """The SUP options an SDK description (`sync=on, ADR=off`) says are on, by option name."""
    return [o for o, word in SUP_OPTIONS.items() if re.search(rf"\b{word}=on\b", text)]


class OptionNames:
    """How one module's options map onto the SDK's field paths, so a failure names what the
    user wrote (`proxy_server`, `use_proxy`, a server of `servers`), never an SDK path such as
    `sup_flags[0]`. The SDK's errors are not changed; they are translated here.

    `servers` is the module's list, in the order the requests were built from it; `fields`
    maps SDK fields (`proxy.port`) to options; `words` replaces SDK names quoted in a reason;
    `explain` holds the module's own wording for a rule, keyed by (rule, SDK list or field),
    called with the error and the server its SDK path points to (or None).
    """

    def __init__(
        self,
        servers: list[str] | None = None,
        fields: dict[str, str] | None = None,
        words: dict[str, str] | None = None,
        explain: dict[tuple[str, str], Callable[[Any, str | None], Explained]] | None = None,
    ) -> None:
        self.servers = servers or []
        self.fields = {**CONNECTION_FIELDS, **(fields or {})}
        self.words = words or {}
        self.explain = explain or {}

    def _server(self, index: str) -> str | None:
        n = int(index)
        return self.servers[n] if n < len(self.servers) else None

    def translate(self, error: Any) -> dict[str, Any]:
        """The error as plain data in the module's terms (never a password)."""
        data = error_dict(error)
        if not (HAS_CMPROXY and isinstance(error, cmproxy.ValidationError)):
            return data
        sdk_field = error.field
        indexed = _INDEXED.match(sdk_field)
        key = indexed.group("list") if indexed else sdk_field
        server = self._server(indexed.group("n")) if indexed else None
        rest = indexed.group("rest") if indexed else None
        explain = self.explain.get((error.rule or "", key))
        if explain is not None:
            field, value, server, text = explain(error, server)
            body = text
        else:
            if indexed and rest in (None, "server"):
                field, value, text = "servers", server or error.value, error.reason
            else:
                path = rest if indexed and rest else sdk_field
                field = self.fields.get(path, path)
                value, text = _plain(error.value), error.reason
            for sdk_name, option in self.words.items():
                text = text.replace(sdk_name, option)
            where = f" for {server}" if server and field != "servers" else ""
            given = " is not set" if value is None else f"={_shown(value)}"
            body = f"{field}{given}{where}: {text}"
        prefix = f"[{error.rule}] " if error.rule else ""
        data.update(
            message=prefix + body,
            field=field,
            value=value,
            reason=text,
            sdk_field=sdk_field,
            server=server,
        )
        return data


def _shown(value: Any) -> str:
    """A value as the user writes it in YAML (no doubled backslashes of a Python repr)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)  # Secret renders as its mask; other values as text


def error_dict(error: BaseException) -> dict[str, Any]:
    """The SDK's structured error as plain data (its messages never carry a password)."""
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if HAS_CMPROXY and isinstance(error, cmproxy.ValidationError):
        data.update(
            field=error.field,
            value=_plain(error.value),
            reason=error.reason,
            rule=error.rule,
        )
    elif HAS_CMPROXY and isinstance(error, cmproxy.ConflictError):
        data.update(server=error.server, detail=error.detail)
    elif HAS_CMPROXY and isinstance(error, cmproxy.PowerShellError):
        data.update(
            fully_qualified_error_id=error.fully_qualified_error_id,
            category=error.category,
            target=error.target,
            command=error.command,
        )
    return data


def fail_with(
    module: AnsibleModule, error: BaseException, names: OptionNames | None = None, **extra: Any
) -> None:
    """Fail the task with the SDK's error, in the module's option names."""
    details = (names or OptionNames()).translate(error)
    msg = details["message"]
    if details.get("rule") and not msg.startswith("["):
        msg = f"[{details['rule']}] {msg}"
    module.fail_json(msg=msg, error=details, **extra)


# -- snapshots and diff ---------------------------------------------------------------------


def snapshot(state: Any, name: str) -> dict[str, Any] | None:
    """A server's proxy and SUP options as plain data (never a password)."""
    snap = cmproxy.ServerSnapshot.of(state, name)
    return snap.to_dict() if snap is not None else None


def expected_after(before: dict[str, Any] | None, name: str, changes: Any) -> dict[str, Any] | None:
    """`before` with server `name`'s planned changes applied (what a committed run leaves):
    the SDK's own `expected_after`, which each change's `Setting` drives."""
    if before is None:
        return None
    snap = cmproxy.ServerSnapshot.from_dict(before)
    return cmproxy.expected_after(snap, name, changes).to_dict()


def _diff_view(snap: dict[str, Any] | None) -> dict[str, Any] | None:
    if snap is None:
        return None
    proxy = snap["proxy"]
    view: dict[str, Any] = {
        "proxy": proxy if proxy["enabled"] else {"enabled": False},
    }
    if snap["sup"] is not None:
        view["sup"] = snap["sup"]
    return view


# -- running a desired state ----------------------------------------------------------------


def _site_of(state: Any, name: str) -> str | None:
    server = state.server(name)
    return server.site_code if server is not None else None


def run_desired(  # noqa: PLR0913 - the modules' call: keyword-only options
    module: AnsibleModule,
    desired: Any,
    servers: list[str],
    *,
    options: Any = None,
    check_state: Any = None,
    names: OptionNames | None = None,
) -> None:
    """Plan `desired`, apply it in one transaction (or only plan it in check mode), exit.

    `check_state(state)` may fail the task after the site was read and before anything is
    planned or written; `names` words the SDK's refusals in the module's options. Exits
    through exit_json/fail_json.
    """
    try:
        state, result, journal_path = _transact(module, desired, options, check_state)
    except cmproxy.CMProxyError as error:
        fail_with(module, error, names)
        return
    the_plan = result.plan
    for warning in the_plan.warnings:
        module.warn(str(warning))
    rows, diff_before, diff_after = _server_rows(state, result, servers, module.check_mode)
    accounts = _accounts(the_plan, diff_before, diff_after)
    output: dict[str, Any] = {
        "changed": not the_plan.is_empty,
        "servers": rows,
        "accounts_created": accounts,
        "plan": [c.to_dict() for c in the_plan],
        "plan_text": the_plan.render(),
        "plan_warnings": [
            {"rule": w.rule, "server": w.server, "message": w.message} for w in the_plan.warnings
        ],
        "transaction_id": result.transaction_id,
        "journal": journal_path,
    }
    if module._diff:
        output["diff"] = {"before": diff_before, "after": diff_after}
    if not result.ok:
        _fail_unapplied(module, result, output)
    module.exit_json(**output)


def _transact(
    module: AnsibleModule, desired: Any, options: Any, check_state: Any
) -> tuple[Any, Any, str | None]:
    """Read the site, check it, run the transaction (a dry run in check mode): the state read,
    the result and the journal's path (None in check mode)."""
    check = module.check_mode
    journal_dir: str | None = None
    journal_path: str | None = None
    session = None
    try:
        session = cmproxy.connect(connection_info(module))
        state = session.read_state()
        if check_state is not None:
            check_state(state)
        if check:
            # Nothing is written in check mode, not even the journal: run_transaction needs
            # one, so it gets a throwaway file.
            journal_dir = tempfile.mkdtemp(prefix="cmproxy-check-")
            journal = cmproxy.Journal(os.path.join(journal_dir, "journal.sqlite3"))
        else:
            journal = cmproxy.Journal(module.params.get("journal_path"))
            journal_path = str(journal.path)
        try:
            result = cmproxy.run_transaction(
                session, desired, journal=journal, base=state, options=options, dry_run=check
            )
        finally:
            journal.close()
    finally:
        if session is not None:
            session.close()
        if journal_dir is not None:
            shutil.rmtree(journal_dir, ignore_errors=True)
    return state, result, journal_path


def _server_rows(
    state: Any, result: Any, servers: list[str], check: bool
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """One row per server (the requested ones first, then any other the plan changes: R5, a
    cloud DP's proxy is written on its managing primary site server), and the diff views."""
    the_plan = result.plan
    outcomes = {o.server.lower(): o for o in result.outcomes}
    names = list(dict.fromkeys(n.lower() for n in servers))
    names += [
        c.target.lower()
        for c in the_plan
        if c.kind is not cmproxy.ChangeKind.CREATE_ACCOUNT and c.target.lower() not in names
    ]
    rows: list[dict[str, Any]] = []
    diff_before: dict[str, Any] = {}
    diff_after: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        changes = the_plan.for_server(name)
        before = snapshot(state, name)
        after = expected_after(before, name, changes)
        outcome = outcomes.get(name)
        if check:
            status = "would change" if changes else "unchanged"
        elif outcome is not None:
            status = outcome.outcome.value
            if outcome.outcome is not cmproxy.Outcome.CHANGED:
                after = outcome.after.to_dict() if outcome.after is not None else None
        else:
            status = "changed" if changes and result.ok else "unchanged"
        rows.append(
            {
                "server": name,
                "site_code": _site_of(state, name),
                "outcome": status,
                "changed": bool(changes),
                "before": before,
                "after": after,
                "fields": [
                    {"field": f.field, "before": f.before, "after": f.after, "note": f.note}
                    for c in changes
                    for f in c.fields
                ],
                "reason": outcome.reason if outcome is not None else "",
            }
        )
        if changes:
            diff_before[name] = _diff_view(before)
            diff_after[name] = _diff_view(after)
    return rows, diff_before, diff_after


def _accounts(
    the_plan: Any, diff_before: dict[str, Any], diff_after: dict[str, Any]
) -> list[dict[str, Any]]:
    """The accounts the plan creates (added to the diff views: a password is never shown)."""
    accounts = [
        {"name": c.target, "site_code": c.site_code}
        for c in the_plan
        if c.kind is cmproxy.ChangeKind.CREATE_ACCOUNT
    ]
    for account in accounts:
        key = f"account {account['name']} at {account['site_code']}"
        diff_before[key] = None
        diff_after[key] = {"exists": True, "password": MASK}
    return accounts


def _fail_unapplied(module: AnsibleModule, result: Any, output: dict[str, Any]) -> None:
    """Fail the task of a transaction that did not end changed or unchanged everywhere."""
    failed = [o for o in result.outcomes if o.outcome is cmproxy.Outcome.FAILED]
    summary = "; ".join(
        f"{o.server}: {o.outcome.value} ({o.reason})"
        for o in result.outcomes
        if o.outcome is not cmproxy.Outcome.UNCHANGED
    )
    # Rolled back: nothing stays changed; failed rollback: the site is in an unknown state;
    # not visible yet: accepted (not rolled back), the journal keeps it open for recover.
    late = [o for o in result.outcomes if o.outcome is cmproxy.Outcome.NOT_VISIBLE]
    output["changed"] = bool(failed or late)
    kind = "RollbackError" if failed else "NotVisibleError" if late else "TransactionError"
    module.fail_json(
        msg=f"the change was not applied: {summary}",
        error={
            "type": kind,
            "message": summary,
        },
        **output,
    )
