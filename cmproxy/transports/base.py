"""The one narrow interface between a session and the wire, plus a fake for unit tests.

A transport runs a `Step` (a PowerShell script, usually a template, with bound parameters)
and brings back a `Result` of plain objects (dicts of primitives), whatever the protocol.
Remote PowerShell errors and foreign exceptions (requests, pypsrp, pywinrm, spnego, ssl) are
turned into cmproxy's own exceptions here, so nothing above this layer sees a library type.

Values are never formatted into script text: PSRP binds them as parameters, WinRS carries them
as JSON on stdin. A `Secret` travels as a SecureString (see docs/sessions.md).
"""

from __future__ import annotations

import abc
import errno
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cmproxy._exceptions import (
    AuthenticationError,
    CMProxyError,
    ConnectionError,
    QuotaExceededError,
    TLSError,
    TransportError,
)
from cmproxy.connection import ConnectionInfo

# The pure values moved to `cmproxy.steps` (issue 16); they are re-exported from here.
from cmproxy.steps import (
    ErrorInfo,
    PipelineRef,
    PipelineWatcher,
    RemoteShell,
    Result,
    Script,
    Step,
    Value,
    category_name,
    error_from_info,
    plain,
)

__all__ = [
    "ErrorInfo",
    "FakeTransport",
    "PipelineRef",
    "PipelineWatcher",
    "RemoteShell",
    "Result",
    "Script",
    "Step",
    "Transport",
    "Value",
    "category_name",
    "error_from_info",
    "plain",
    "translate_exception",
]

# -- foreign exceptions ---------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException) and id(arg) not in seen:
                yield from _chain(arg)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            yield from _chain(reason)
        current = current.__cause__ or current.__context__


#: WSManFault codes of WinRM quotas (wsmerror.h, as PowerShell's CimChildJobBase.cs copies
#: them): ERROR_WSMAN_QUOTA_MAX_SHELLS 0x803381A5 … _SYSTEM 0x803381A8, _MAX_SHELLUSERS
#: 0x803381AB, and the per-plug-in quotas 0x803381E4 … 0x803381EA.
QUOTA_FAULT_CODES = frozenset(
    {0x803381A5, 0x803381A6, 0x803381A7, 0x803381A8, 0x803381AB, *range(0x803381E4, 0x803381EB)}
)
_QUOTA_LIMIT = re.compile(r"maximum number of (\d+) concurrent", re.IGNORECASE)


def _quota_fault(chain: Sequence[BaseException]) -> tuple[int | None, str, int | None] | None:
    """(WSManFault code, text, the quota it names) of a WinRM quota fault in the chain.

    pypsrp's WSManFaultError carries the WSManFault Code as `code` and its f:Message as
    `reason`; pywinrm's carries the code as `wsman_fault_code`, the SOAP subcode (w:QuotaLimit,
    MS-WSMV 3.1.4.5.2.1) apart, the s:Reason as `reason` and the f:Message only in `response`.
    """
    for e in chain:
        names = _names(e)
        code: Any = None
        if "pypsrp.exceptions.WSManFaultError" in names:
            code = getattr(e, "code", None)
            text = str(getattr(e, "reason", "") or "")
            quota = isinstance(code, int) and code in QUOTA_FAULT_CODES
        elif "winrm.exceptions.WSManFaultError" in names:
            code = getattr(e, "wsman_fault_code", None)
            text = str(getattr(e, "reason", "") or "")
            subcode = str(getattr(e, "fault_subcode", "") or "")
            quota = subcode.endswith("QuotaLimit") or (
                isinstance(code, int) and code in QUOTA_FAULT_CODES
            )
        else:
            continue
        if quota:
            found = _QUOTA_LIMIT.search(text) or _QUOTA_LIMIT.search(
                str(getattr(e, "response", "") or "")
            )
            limit = int(found.group(1)) if found else None
            return (code if isinstance(code, int) else None), text, limit
    return None


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


#: Kerberos library errors (pyspnego, krb5, gssapi, pywinrm's vendored requests_kerberos).
_KERBEROS_ERROR_PREFIXES = (
    "spnego.exceptions.",
    "krb5._exceptions.",
    "gssapi.",
    "winrm.vendor.requests_kerberos.exceptions.",
)

#: What the usual Kerberos failures mean, by a pattern of the library's message (MIT krb5's
#: error texts; the first match wins).
_KERBEROS_HINTS = (
    ("integrity check failed", "the password is wrong"),
    ("preauthentication failed", "the password is wrong"),
    (r"client .*not found", "the KDC does not know this user principal (user@REALM)"),
    (
        "not found in kerberos database",
        "the KDC knows no such service principal: connect by the server's DNS name, or set "
        "negotiate_hostname_override to it",
    ),
    ("no credentials", "no Kerberos ticket: run kinit, or give username and password"),
    ("cannot find kdc", "no KDC for the realm: check krb5.conf (KRB5_CONFIG)"),
    ("cannot contact any kdc", "the KDC does not answer: check krb5.conf and the network"),
    ("clock skew", "the clocks of this machine and the KDC differ by more than 5 minutes"),
)


def _kerberos_failure(chain: list[BaseException]) -> str | None:
    """What went wrong in a Kerberos library error in `chain` (with a hint), else None.

    The libraries' messages name principals and KDC errors, never a password.
    """
    for e in reversed(chain):  # the innermost error says most
        if not any(n.startswith(_KERBEROS_ERROR_PREFIXES) for n in _names(e)):
            continue
        text = " ".join(str(e).split())[:300] or type(e).__name__
        lowered = text.lower()
        hint = next((h for pattern, h in _KERBEROS_HINTS if re.search(pattern, lowered)), None)
        return f"{text} ({hint})" if hint else text
    return None


def translate_exception(
    exc: BaseException,
    info: ConnectionInfo,
    *,
    auth_errors: tuple[type[BaseException], ...] = (),
    stage: str = "",
) -> CMProxyError:
    """The cmproxy exception for a foreign one, with a message that says what to do.

    The one place where library exceptions become ours: each transport passes its own
    library's authentication error types; requests/urllib3/ssl/socket/spnego errors are
    recognised here. The password never appears: messages are built from `info` fields and
    exception class names, not from request bodies.
    """
    if isinstance(exc, CMProxyError):
        return exc
    where = f"{info.endpoint}"
    doing = f" while {stage}" if stage else ""
    chain = list(_chain(exc))
    names: set[str] = set()
    for e in chain:
        names |= _names(e)

    quota = _quota_fault(chain)
    if quota is not None:
        return _quota_error(quota, info, doing)
    auth_failure = _auth_protocol_failure(chain, names, info, doing)
    if auth_failure is not None:
        return auth_failure
    if isinstance(exc, auth_errors) or any(
        n.startswith("spnego.exceptions.") and "Error" in n for n in names
    ):
        return AuthenticationError(
            f"{where} refused the credentials of {info.username or '(no user)'!r} "
            f"(auth={info.auth}){doing}. Check the user name (DOMAIN\\user), the password, "
            "that the account is allowed to use WinRM on the SMS Provider, and that the "
            "auth protocol is enabled in the WinRM service configuration."
        )
    if any(isinstance(e, ssl.SSLError) for e in chain) or "requests.exceptions.SSLError" in names:
        return _tls_error(exc, info, doing)
    return _network_error(exc, chain, names, info, doing)


def _auth_protocol_failure(
    chain: list[BaseException], names: set[str], info: ConnectionInfo, doing: str
) -> AuthenticationError | None:
    """A Kerberos or CredSSP failure, said in that protocol's terms (None: not one)."""
    where = info.endpoint
    if info.auth == "kerberos":
        kerberos = _kerberos_failure(chain)
        if kerberos is not None:
            return AuthenticationError(
                f"Kerberos authentication to {where} as {info.username or '(ticket cache)'!r} "
                f"failed{doing}: {kerberos}"
            )
    if info.auth == "credssp" and any(n.startswith("requests_credssp.") for n in names):
        text = " ".join(str(chain[-1]).split())[:300]
        return AuthenticationError(
            f"CredSSP authentication to {where} as {info.username or '(no user)'!r} "
            f"failed{doing}: {text}. The endpoint must allow CredSSP (Enable-WSManCredSSP -Role "
            "Server; winrm get winrm/config/service/auth)."
        )
    return None


def _quota_error(
    quota: tuple[int | None, str, int | None], info: ConnectionInfo, doing: str
) -> QuotaExceededError:
    code, text, limit = quota
    allowed = f"{limit} shells" if limit is not None else "its shells"
    return QuotaExceededError(
        f"{info.endpoint} refused a shell{doing}: the account {info.username or '(no user)'!r} "
        f"already holds the {allowed} WinRM allows it (WSManFault {code}: {text[:300]}). "
        "Close other sessions of this account (Remove-PSSession, other cmproxy runs), "
        "lower account_max_shells below the endpoint's MaxShellsPerUser, or raise the quota "
        "(WSMan:\\localhost\\Plugin\\microsoft.powershell\\Quotas\\MaxShellsPerUser).",
        limit=limit,
        code=code,
    )


def _tls_error(exc: BaseException, info: ConnectionInfo, doing: str) -> TLSError:
    where = info.endpoint
    if not info.cert_validation:
        return TLSError(f"TLS with {where} failed{doing}: {type(exc).__name__}")
    hint = (
        f"pass ca_cert=<PEM file of the CA that issued it> (now {info.ca_cert!r})"
        if info.ca_cert is None
        else f"check that {info.ca_cert} holds the CA that issued it"
    )
    return TLSError(
        f"the TLS certificate of {where} is not trusted{doing}: {hint}, or use the "
        "server's name as it appears in the certificate. cert_validation=False turns "
        "the check off (lab only)."
    )


def _network_error(
    exc: BaseException,
    chain: Sequence[BaseException],
    names: set[str],
    info: ConnectionInfo,
    doing: str,
) -> CMProxyError:
    """A connection that failed, timed out or got no answer (or some other exchange error)."""
    where = info.endpoint
    refused = any(
        isinstance(e, ConnectionRefusedError)
        or (isinstance(e, OSError) and e.errno in {errno.ECONNREFUSED, errno.EHOSTUNREACH})
        for e in chain
    )
    unresolved = any(isinstance(e, socket.gaierror) for e in chain)
    connect_timeout = (
        "requests.exceptions.ConnectTimeout" in names
        or "urllib3.exceptions.ConnectTimeoutError" in names
    )
    if connect_timeout and not (refused or unresolved):
        return ConnectionError(
            f"connecting to {where} timed out after {info.connection_timeout:g}s{doing}. Check "
            "the server name and port, that the WinRM listener runs, and firewalls between."
        )
    if refused or unresolved or "requests.exceptions.ConnectionError" in names:
        if unresolved:
            why = f"the name {info.server!r} does not resolve"
        elif refused:
            why = "the connection was refused (nothing listens on that port)"
        else:
            why = "the connection failed"
        return ConnectionError(
            f"cannot reach {where}{doing}: {why}. Check the server name, the port "
            f"({info.effective_port}: 5986 for https, 5985 for http), that WinRM listens "
            "(winrm quickconfig / Enable-PSRemoting) and firewalls between."
        )
    if "requests.exceptions.Timeout" in names or isinstance(exc, TimeoutError):
        return TransportError(
            f"{where} did not answer within read_timeout={info.read_timeout:g}s{doing}; the "
            "operation may still be running on the server."
        )
    return TransportError(f"the WinRM exchange with {where} failed{doing}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the interface --------------------------------------------------------------------------


class Transport(abc.ABC):
    """Runs steps on one endpoint. Implementations: PSRP (pypsrp) and WinRS (pywinrm).

    `setup` is run before the first step in every fresh PowerShell process or runspace (the
    session bootstrap: module import and site drive); it is the transport that knows when a
    runspace is fresh. Its output is kept in `last_setup` for the session to inspect.
    """

    #: Steps it runs at once at most (PSRP: its runspace pools; WinRS: one after the other).
    max_pools: int = 1

    def __init__(self, info: ConnectionInfo, setup: Step | None = None) -> None:
        self.info = info
        self.setup = setup
        self.last_setup: Result | None = None
        #: Told each pipeline's shell and command just before it is sent (`announce`), so a
        #: journal can record what may still run on the server if this process dies.
        self.watchers: list[PipelineWatcher] = []

    def announce(self, ref: PipelineRef) -> None:
        """Tell the watchers; one that raises keeps the pipeline from being sent."""
        for watcher in list(self.watchers):
            watcher(ref)

    def own_shells(self) -> frozenset[str]:
        """Ids (upper case) of the shells this transport holds open now."""
        return frozenset()

    def list_shells(self) -> list[RemoteShell] | None:
        """The caller's shells on the endpoint; None when this transport cannot list them."""
        return None

    def delete_shell(self, resource_uri: str, shell_id: str) -> bool:
        """Delete one of the caller's shells (ending its commands); False if already gone."""
        raise TransportError(f"this transport cannot delete the shell {shell_id}")

    @abc.abstractmethod
    def connect(self) -> Result | None:
        """Connect now and run the setup step once; its result (None without setup)."""

    def warm(  # noqa: B027 - optional, a no-op by default
        self,
        concurrency: int,
        *,
        secrets: bool = False,
        wait: bool = True,
        at_once: int | None = None,
    ) -> None:
        """Prepare for `concurrency` concurrent steps (PSRP opens its pools in parallel);
        `secrets`: steps will send SecureStrings (PSRP exchanges its keys while importing);
        `wait=False`: return before they are ready; `at_once`: bootstraps (module imports)
        run at most that many at a time (None: as many as the provider has logical
        processors, PSRP asking it first; all at once if it does not say)."""

    def lanes_ready(self) -> int | None:
        """Steps it can run at once now while some of its lanes are still warming (opening or
        importing the module); None when none is (only `max_pools` bounds it then)."""
        return None

    @abc.abstractmethod
    def run(self, step: Step) -> Result:
        """Run `step`; raise a PowerShellError for a terminating remote error."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the remote runspace/shell; safe to call twice."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Handler = Callable[[Step], Result | Sequence[Any]]


class FakeTransport(Transport):
    """A strict stub for unit tests: `handler(step)` answers each step; every step is kept.

    The handler returns a `Result` or a list of output objects, or raises a cmproxy error.
    """

    def __init__(
        self,
        handler: Handler,
        info: ConnectionInfo | None = None,
        setup: Step | None = None,
    ) -> None:
        super().__init__(info or ConnectionInfo(server="fake.invalid", auth="kerberos"), setup)
        self.handler = handler
        self.steps: list[Step] = []
        self.closed = False
        self._set_up = False

    def _call(self, step: Step) -> Result:
        self.steps.append(step)
        answer = self.handler(step)
        if isinstance(answer, Result):
            return answer
        return Result(output=tuple(answer))

    def connect(self) -> Result | None:
        if self.closed:
            raise TransportError("the fake transport was closed")
        if self.setup is not None and not self._set_up:
            self.last_setup = self._call(self.setup)
            self._set_up = True
        return self.last_setup

    def run(self, step: Step) -> Result:
        self.connect()
        return self._call(step)

    def close(self) -> None:
        self.closed = True
