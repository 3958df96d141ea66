"""WinRS transport (pywinrm): each step is one `powershell.exe` process in a reused cmd shell.

cmd.exe refuses command lines over 8,191 characters, and values must never be formatted
into script text, so the command line only carries a short, constant bootstrap
(`powershell -EncodedCommand`). The step itself travels on **stdin** as one line of JSON:
the template text and its parameters as name/value pairs; each secret follows on its own
line (%-escaped), so that no cmdlet but ConvertTo-SecureString ever receives it. The
bootstrap reads `$input`, rebuilds a parameter hashtable, turns secret values into
SecureStrings with `ConvertTo-SecureString -AsPlainText -Force` *from a variable*, defines the
template text as a function (`Invoke-Expression` of `function … { <template> }`: only package
code is ever evaluated, never a value) and invokes it with splatting. A function runs in its own
child scope (about_Scopes), like `& { … }`: the template's variables never reach the
bootstrap's global scope, the WinRS equivalent of PSRP's UseLocalScope. Each output object
comes back as one JSON line on stdout; a terminating error comes back as one JSON line
carrying FullyQualifiedErrorId, category, target and message (CLIXML on stderr is the
fallback for errors the bootstrap itself could not catch).

The JSON line is ASCII-only (non-ASCII escaped as \\uXXXX) and the shell is opened with code
page 65001, so non-ASCII text survives both ways. The secret is inside the WinRM message
encryption (or TLS) on the wire, never on a command line or in a log.

Every process is fresh, so the session's setup step (module import, site drive) runs in the
same process before each step.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import weakref
from typing import Any

from winrm.exceptions import AuthenticationError as WinRMAuthenticationError
from winrm.exceptions import WinRMTransportError
from winrm.protocol import Protocol

from cmproxy._exceptions import CMProxyError, TransportError
from cmproxy.connection import ConnectionInfo
from cmproxy.model import Secret
from cmproxy.retry import wait_for_quota
from cmproxy.slots import ShellSlots, Slot
from cmproxy.templates import load_prelude
from cmproxy.transports.base import (
    ErrorInfo,
    PipelineRef,
    RemoteShell,
    Result,
    Step,
    Transport,
    error_from_info,
    plain,
    translate_exception,
)

__all__ = ["BOOTSTRAP", "WinRSTransport", "encode_request"]

#: The WinRS cmd shell's resource URI (pywinrm opens its shells there).
_RESOURCE_CMD = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"


class _NotSent(Exception):  # noqa: N818 - internal signal
    """A watcher refused the command before its input was sent: `error` is why."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


log = logging.getLogger(__name__)

#: The constant script on the command line. It never contains a value.
BOOTSTRAP = r"""$ErrorActionPreference = 'Stop'
$lines = @($input)
$request = ConvertFrom-Json -InputObject $lines[0]
$failed = $false
$index = 0
# The prelude (package code: the functions templates share) is defined here, for every step.
Invoke-Expression -Command $request.prelude
foreach ($step in $request.steps) {
    if (-not $failed) {
        $params = @{}
        foreach ($p in $step.parameters) {
            if ($p.secret) {
                # A secret is never inside the JSON: it is its own stdin line, %-escaped.
                $plain = $lines[$p.line] -replace '%0A', "`n" -replace '%0D', "`r"
                $plain = $plain -replace '%25', '%'
                $params[$p.name] = ConvertTo-SecureString -String $plain -AsPlainText -Force
                $plain = $null
            } else {
                $params[$p.name] = $p.value
            }
        }
        try {
            # The template text (code from the package, never a value) becomes a function;
            # the values are splatted into its param() block.
            $definition = 'function Invoke-CMProxyStep {' + "`n" + $step.script + "`n" + '}'
            Invoke-Expression -Command $definition
            Invoke-CMProxyStep @params | ForEach-Object {
                $item = [pscustomobject]@{ cmproxy = 'o'; step = $index; value = $_ }
                ConvertTo-Json -InputObject $item -Compress -Depth 6
            }
        } catch {
            $failed = $true
            $record = $_
            $item = [pscustomobject]@{
                cmproxy = 'e'
                step = $index
                id = [string]$record.FullyQualifiedErrorId
                category = [string]$record.CategoryInfo.Category
                target = [string]$record.CategoryInfo.TargetName
                activity = [string]$record.CategoryInfo.Activity
                message = [string]$record.Exception.Message
            }
            ConvertTo-Json -InputObject $item -Compress
        }
        $index = $index + 1
    }
}
"""

_COMMAND = "powershell.exe"
_ARGUMENTS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand")

_WINRM_AUTH = {
    "negotiate": "ntlm",  # pywinrm has no SPNEGO "negotiate"; its NTLM is the equivalent
    "ntlm": "ntlm",
    "kerberos": "kerberos",
    "credssp": "credssp",
    "basic": "basic",
    "certificate": "certificate",
}


def encode_request(steps: list[Step]) -> bytes:
    """stdin for the bootstrap: one ASCII JSON line with the steps, then one line per secret.

    Secrets stay out of the JSON so that no cmdlet ever receives them as a parameter value
    except `ConvertTo-SecureString` (ConvertFrom-Json would otherwise see the whole line).
    A secret line is UTF-8 with `%`, CR and LF escaped as %25, %0D, %0A.
    """
    secrets: list[str] = []

    def parameter(name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, Secret):
            secrets.append(_escape_secret(value.reveal()))
            return {"name": name, "secret": True, "line": len(secrets)}
        if isinstance(value, tuple):
            value = list(value)
        return {"name": name, "value": value, "secret": False}

    payload = {
        "prelude": load_prelude(),
        "steps": [
            {
                "name": step.script.name,
                "script": step.script.text,
                "parameters": [parameter(name, value) for name, value in step.parameters],
            }
            for step in steps
        ],
    }
    head = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return "\r\n".join([head, *secrets, ""]).encode("utf-8")


def _escape_secret(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def encoded_command() -> str:
    return base64.b64encode(BOOTSTRAP.encode("utf-16-le")).decode("ascii")


class WinRSTransport(Transport):
    """Runs each step in a new remote powershell.exe inside one reused WinRS shell.

    Safe for concurrent use: steps from several threads run one at a time (the shell and its
    message-encryption context are shared); use PSRP for concurrency.
    """

    def __init__(self, info: ConnectionInfo, setup: Step | None = None) -> None:
        super().__init__(info, setup)
        self._lock = threading.RLock()
        self._slots = ShellSlots.for_connection(info)
        #: The open shell: protocol, shell id and its account-wide slot (see cmproxy.slots).
        self._held = _HeldShell()
        # The shell is closed even when the transport is not: at garbage collection or exit.
        self._finalizer = weakref.finalize(self, self._held.close)

    def _translate(self, exc: BaseException, stage: str) -> CMProxyError:
        if isinstance(exc, WinRMTransportError) and getattr(exc, "code", None) == 401:
            exc = WinRMAuthenticationError(str(exc))
        return translate_exception(
            exc, self.info, auth_errors=(WinRMAuthenticationError,), stage=stage
        )

    def _make_protocol(self) -> Protocol:
        info = self.info
        proxy: str | None = info.proxy if info.proxy else "legacy_requests"
        if info.ignore_proxy and not info.proxy:
            proxy = None
        return Protocol(
            endpoint=info.endpoint,
            transport=_WINRM_AUTH[info.auth],  # type: ignore[arg-type]
            username=info.username,
            password=info.password.reveal() if info.password else None,
            server_cert_validation="validate" if info.cert_validation else "ignore",
            ca_trust_path=info.ca_cert,  # type: ignore[arg-type]  # None: default store, not env
            cert_pem=info.certificate_pem,
            cert_key_pem=info.certificate_key_pem,
            message_encryption=info.message_encryption,
            read_timeout_sec=int(info.read_timeout),
            operation_timeout_sec=int(info.operation_timeout),
            proxy=proxy,
            kerberos_hostname_override=info.negotiate_hostname_override,
        )

    def _shell(self) -> tuple[Protocol, str]:
        held = self._held
        if held.protocol is not None and held.shell_id is not None:
            return held.protocol, held.shell_id
        return wait_for_quota(
            self._open_shell,
            deadline=self.info.quota_wait,
            what=f"a WinRS shell on {self.info.endpoint}",
        )

    def _open_shell(self) -> tuple[Protocol, str]:
        held = self._held
        if self._slots is not None and held.slot is None:
            held.slot = self._slots.take()
        try:
            protocol = self._make_protocol()
            shell_id = protocol.open_shell(codepage=65001, noprofile=True)
        except Exception as exc:
            held.release_slot()
            raise self._translate(exc, "opening a WinRS shell") from None
        held.protocol, held.shell_id = protocol, shell_id
        return protocol, shell_id

    def connect(self) -> Result | None:
        if self.setup is None:
            with self._lock:
                self._shell()
            return None
        results = self._run_steps([self.setup])
        self.last_setup = results[0]
        return self.last_setup

    def run(self, step: Step) -> Result:
        steps = [self.setup, step] if self.setup is not None else [step]
        results = self._run_steps(steps)
        if self.setup is not None:
            self.last_setup = results[0]
        return results[-1]

    def _run_steps(self, steps: list[Step]) -> list[Result]:
        step = steps[-1]
        log.debug("WinRS run %s", step.describe())
        request = encode_request(steps)
        with self._lock:
            try:
                stdout, stderr, code = self._execute(request)
            except _ShellGone:
                self._forget_shell()
                stdout, stderr, code = self._execute(request)
        return _parse(stdout, stderr, code, steps)

    def _execute(self, request: bytes) -> tuple[bytes, bytes, int]:
        protocol, shell_id = self._shell()
        started = False
        try:
            command_id = protocol.run_command(shell_id, _COMMAND, [*_ARGUMENTS, encoded_command()])
            started = True
            # The process waits for its input: before sending it, say which shell and command
            # will run it (a watcher may refuse: then the process is ended unfed).
            try:
                self.announce(PipelineRef(_RESOURCE_CMD, shell_id.upper(), command_id.upper()))
            except BaseException as exc:
                raise _NotSent(exc) from exc
            protocol.send_command_input(shell_id, command_id, request, end=True)
            stdout, stderr, code = protocol.get_command_output(shell_id, command_id)
            try:
                protocol.cleanup_command(shell_id, command_id)
            except Exception:  # the output is in; a failed cleanup is not the user's problem
                log.debug("cleaning up a WinRS command failed", exc_info=True)
        except _NotSent as refused:
            with contextlib.suppress(Exception):
                protocol.cleanup_command(shell_id, command_id)
            raise refused.error from None
        except Exception as exc:
            if not started and "2150858843" in str(exc):
                raise _ShellGone from None
            self._forget_shell()
            raise self._translate(exc, "running a step over WinRS") from None
        return stdout, stderr, code

    def _forget_shell(self) -> None:
        self._held.close()

    def list_shells(self) -> list[RemoteShell] | None:
        from cmproxy.transports import shells  # noqa: PLC0415 - only recovery lists shells

        return shells.list_shells(self.info)

    def delete_shell(self, resource_uri: str, shell_id: str) -> bool:
        from cmproxy.transports import shells  # noqa: PLC0415 - only recovery deletes shells

        return shells.delete_shell(self.info, resource_uri, shell_id)

    def own_shells(self) -> frozenset[str]:
        shell_id = self._held.shell_id
        return frozenset({shell_id.upper()}) if shell_id else frozenset()

    def close(self) -> None:
        with self._lock:
            self._forget_shell()


class _HeldShell:
    """The transport's WinRS shell and its slot; `close()` deletes the shell, frees the slot."""

    def __init__(self) -> None:
        self.protocol: Protocol | None = None
        self.shell_id: str | None = None
        self.slot: Slot | None = None

    def release_slot(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()

    def close(self) -> None:
        protocol, shell_id = self.protocol, self.shell_id
        self.protocol = self.shell_id = None
        try:
            if protocol is not None and shell_id is not None:
                try:
                    protocol.close_shell(shell_id)
                except Exception:  # the shell may already be gone
                    log.debug("closing a WinRS shell failed", exc_info=True)
        finally:
            self.release_slot()


class _ShellGone(Exception):  # noqa: N818 - internal signal
    """The server no longer knows our shell and the command did not start."""


def _lines(text: str) -> list[str]:
    """The lines PowerShell wrote (CR LF, or LF): not `str.splitlines()`, which also breaks at
    U+0085, U+2028, U+2029 and other separators a value may hold (a site name, an account)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _parse(stdout: bytes, stderr: bytes, code: int, steps: list[Step]) -> list[Result]:
    outputs: list[list[Any]] = [[] for _ in steps]
    error: ErrorInfo | None = None
    failed_step = len(steps) - 1
    for raw in _lines(stdout.decode("utf-8", "replace")):
        line = raw.strip()
        if not line.startswith("{") or '"cmproxy"' not in line:
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        index = int(item.get("step") or 0)
        index = min(max(index, 0), len(steps) - 1)
        if item.get("cmproxy") == "o":
            outputs[index].append(plain(item.get("value")))
        elif item.get("cmproxy") == "e":
            failed_step = index
            error = ErrorInfo(
                message=str(item.get("message") or ""),
                fully_qualified_error_id=str(item.get("id") or ""),
                category=str(item.get("category") or ""),
                target=str(item.get("target") or ""),
                command=str(item.get("activity") or steps[index].script.name),
            )
    if error is None and (code != 0 or stderr.strip()):
        error = _error_from_clixml(stderr, steps[-1])
    if error is not None:
        if error.command == "":
            error = ErrorInfo(
                error.message,
                error.fully_qualified_error_id,
                error.category,
                error.target,
                steps[failed_step].script.name,
            )
        raise error_from_info(error)
    return [Result(output=tuple(o)) for o in outputs]


_CLIXML_STRING = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)


def _unescape_clixml(text: str) -> str:
    text = re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)
    return (
        text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    )


def _error_from_clixml(stderr: bytes, step: Step) -> ErrorInfo | None:
    text = stderr.decode("utf-8", "replace")
    if not text.strip():
        return ErrorInfo(f"{step.script.name} failed on the server without an error message")
    if text.startswith("#< CLIXML"):
        text = "".join(_unescape_clixml(s) for s in _CLIXML_STRING.findall(text))
    fqid = ""
    category = ""
    message_lines: list[str] = []
    for line in _lines(text):
        stripped = line.strip()
        if stripped.startswith("+ FullyQualifiedErrorId"):
            fqid = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("+ CategoryInfo"):
            category = stripped.split(":", 1)[1].strip().split(":", 1)[0]
        elif stripped.startswith("+ ") or stripped.startswith("At line:"):
            continue
        elif stripped and not fqid:
            message_lines.append(stripped)
    message = " ".join(message_lines) or text.strip()[:500]
    if " : " in message and not message.startswith(" "):
        message = message.split(" : ", 1)[1]
    if not message and not fqid:
        raise TransportError(f"{step.script.name} failed and its error output was unreadable")
    return ErrorInfo(message=message, fully_qualified_error_id=fqid, category=category)
