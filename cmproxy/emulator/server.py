"""The emulator's WinRM endpoint: HTTP/1.1 keep-alive on /wsman, auth, encryption, WSMan.

One handler object lives per TCP connection (http.server calls handle_one_request in a loop),
which is where NTLM's per-connection auth state belongs. Faults and costs from the shared
`EmulatorSettings` are applied here, before a request reaches a shell.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from cmproxy.emulator import shell_enum, wsman
from cmproxy.emulator.cmd_shell import CmdShell
from cmproxy.emulator.engine.api import Engine
from cmproxy.emulator.http_auth import (
    AuthConfig,
    AuthError,
    ConnectionAuth,
    EncryptionError,
)
from cmproxy.emulator.psrp_shell import PSRPShell
from cmproxy.emulator.settings import EmulatorSettings

log = logging.getLogger(__name__)

Shell = PSRPShell | CmdShell


@attrs.define
class ServerConfig:
    """Protocol knobs (not product behaviour: that lives in EmulatorSettings)."""

    #: Longest a Receive blocks before answering w:TimedOut (also capped by OperationTimeout).
    receive_timeout: float = 20.0
    #: Advertised cfg:MaxEnvelopeSizekb (pypsrp raises its envelope to this after Get).
    max_envelope_kb: int = 500
    #: Idle keep-alive connections are closed after this many seconds.
    idle_timeout: float = 120.0
    #: http.sys's HeaderWait timer: seconds from a request's first byte to the end of its
    #: header; then the connection is dropped (HTTP_TIMEOUT_LIMIT_INFO, default 120 s; httperr
    #: reason Timer_HeaderWait). A client trickling its header cannot hold a thread forever.
    header_wait: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    #: The clock of shell idle timeouts (tests move it instead of waiting).
    clock: Callable[[], float] = time.monotonic


@attrs.define
class _Held:
    """What the service keeps beside a shell: its owner and when a request last touched it."""

    owner: str
    plugin: bool
    idle_timeout: float
    last: float
    active: int = 0


class WSManService:
    """Dispatches parsed WSMan requests to shells; knows nothing about HTTP."""

    def __init__(
        self,
        engine: Engine,
        settings: EmulatorSettings,
        config: ServerConfig,
        endpoint: str = "",
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.config = config
        self.endpoint = endpoint
        self.shells: dict[str, Shell] = {}
        self._held: dict[str, _Held] = {}
        #: Creates refused for a quota (for tests and diagnostics).
        self.quota_refusals = 0
        self.lock = threading.Lock()
        #: Per shell: (owner as given, client IP, created) for the shell enumeration.
        self._born: dict[str, tuple[str, str, float]] = {}
        self._enumerations = shell_enum.Enumerations()

    def handle(self, req: wsman.Request, user: str, client_ip: str) -> bytes:
        self.expire_idle()
        action = req.action
        if action == wsman.ACTION_GET:
            return self._get(req, user)
        if action == wsman.ACTION_CREATE:
            return self._create(req, user, client_ip)
        if action == shell_enum.ACTION_ENUMERATE:
            return self._enumerate(req, user)
        if action == shell_enum.ACTION_PULL:
            return self._enumerations.pull(req, user)
        if action not in (
            wsman.ACTION_COMMAND,
            wsman.ACTION_SEND,
            wsman.ACTION_RECEIVE,
            wsman.ACTION_SIGNAL,
            wsman.ACTION_DELETE,
        ):
            raise wsman.WSManFault(
                wsman.CODE_ACTION_NOT_SUPPORTED,
                f"The WS-Management service does not support the action {action[:200]}.",
            )
        shell = self._shell(req, user)
        if action == wsman.ACTION_DELETE:
            return self._delete(req, shell)
        self._touch(shell.shell_id, +1)
        try:
            if action == wsman.ACTION_COMMAND:
                self._admit_command(shell)
                return wsman.response(req, [shell.command(req)])
            if action == wsman.ACTION_SEND:
                return wsman.response(req, [shell.send(req)])
            if action == wsman.ACTION_SIGNAL:
                return wsman.response(req, [shell.signal(req)])
            wait = wsman.receive_wait(req, self.config.receive_timeout)
            return wsman.response(req, [shell.receive(req, wait)])
        finally:
            self._touch(shell.shell_id, -1)

    # -- quotas and idle timeouts -----------------------------------------------------------

    def _touch(self, shell_id: str, delta: int) -> None:
        """A request on the shell starts (+1) or ends (-1): it is not idle meanwhile."""
        with self.lock:
            held = self._held.get(shell_id)
            if held is not None:
                held.active = max(0, held.active + delta)
                held.last = self.config.clock()

    def _forget(self, shell_id: str) -> None:
        with self.lock:
            self.shells.pop(shell_id, None)
            self._held.pop(shell_id, None)
            self._born.pop(shell_id, None)

    def _delete(self, req: wsman.Request, shell: Shell) -> bytes:
        """Delete the shell; the answer comes once what ran in it has stopped (`close`)."""
        if self.settings.faults.refuse_shell_delete:
            raise wsman.WSManFault(wsman.CODE_INTERNAL, "Injected fault: the shell is stuck.")
        self._forget(shell.shell_id)
        shell.close()
        return wsman.response(req, [])

    # -- enumeration (MS-WSMV 3.1.4.8.2) -------------------------------------------------------

    def _enumerate(self, req: wsman.Request, user: str) -> bytes:
        """Enumerate the caller's shells, or the commands of one of them (see shell_enum)."""
        self.expire_idle()
        uri = req.resource_uri.lower()
        if uri == shell_enum.RESOURCE_COMMAND.lower():
            shell_id = shell_enum.filtered_shell_id(req)
            mine = {v.shell_id: v for v in self.shell_views(user)}
            if shell_id is None or shell_id not in mine:
                with self.lock:
                    exists = shell_id is not None and shell_id.upper() in self.shells
                if exists and shell_id is not None and not self.owns(shell_id, user):
                    raise self._foreign(shell_id)  # the same answer as every shell operation
                raise wsman.shell_not_found(shell_id or "")
            items = [shell_enum.command_item(shell_id, c) for c in mine[shell_id].commands]
            return self._enumerations.respond(req, user, items)
        kinds = {
            wsman.RESOURCE_SHELL.lower(): None,
            wsman.RESOURCE_CMD.lower(): wsman.RESOURCE_CMD,
            wsman.RESOURCE_PWSH.lower(): wsman.RESOURCE_PWSH,
        }
        if uri not in kinds:
            raise wsman.WSManFault(
                wsman.CODE_DESTINATION_UNREACHABLE,
                f"The WS-Management service cannot process the request. The resource URI "
                f"{req.resource_uri[:200]} was not found in the WS-Management catalog.",
            )
        only = kinds[uri]
        items = [
            shell_enum.shell_item(v)
            for v in self.shell_views(user)
            if only is None or v.resource_uri == only
        ]
        return self._enumerations.respond(req, user, items)

    def shell_views(self, user: str) -> list[shell_enum.ShellView]:
        """The shells `user` created that still exist, oldest first."""
        key = user.lower()
        now = self.config.clock()
        with self.lock:
            rows = [
                (sid, self.shells[sid], held, self._born.get(sid, (key, "", now)))
                for sid, held in self._held.items()
                if held.owner == key and sid in self.shells
            ]
        views = []
        for sid, shell, held, (owner, ip, born) in sorted(rows, key=lambda r: r[3][2]):
            info = shell.shell_info()
            views.append(
                shell_enum.ShellView(
                    shell_id=sid,
                    resource_uri=shell.resource_uri,
                    owner=owner,
                    client_ip=ip,
                    idle_timeout=held.idle_timeout,
                    run_time=now - born,
                    inactivity=0.0 if held.active else now - held.last,
                    input_streams=info.get("InputStreams", ""),
                    output_streams=info.get("OutputStreams", ""),
                    commands=tuple(shell.command_ids()),
                )
            )
        return views

    def expire_idle(self) -> list[str]:
        """Delete the shells no request touched for their IdleTimeout (WinRS `IdleTimeout`,
        the plug-in's `IdleTimeoutms`: "the maximum time … before an inactive remote shell is
        deleted", learn.microsoft.com/windows/win32/winrm/quotas). A deleted shell no longer
        counts against a quota; a later request on it gets the shell-not-found fault.
        Returns the ids deleted (for logs and tests)."""
        now = self.config.clock()
        with self.lock:
            gone = [
                sid
                for sid, held in self._held.items()
                if held.active == 0 and 0 < held.idle_timeout <= now - held.last
            ]
            shells = [self.shells.pop(sid) for sid in gone if sid in self.shells]
            for sid in gone:
                del self._held[sid]
        for shell in shells:
            log.info("shell %s idle beyond its IdleTimeout: deleted", shell.shell_id)
            shell.close()
        return gone

    def shells_of(self, user: str) -> list[str]:
        """Ids of the shells `user` holds now (after expiring idle ones)."""
        self.expire_idle()
        key = user.lower()
        with self.lock:
            return [sid for sid, held in self._held.items() if held.owner == key]

    def _admit(self, user: str, plugin: bool) -> None:
        """Refuse a Create beyond the user's quotas (call with self.lock held).

        The plug-in's MaxShellsPerUser counts the user's shells of that plug-in; WinRS's
        MaxShellsPerUser counts all of the user's shells (see `Quotas`).
        """
        quotas = self.settings.quotas
        key = user.lower()
        mine = [h for h in self._held.values() if h.owner == key]
        if plugin:
            limit = quotas.plugin_max_shells_per_user
            if limit > 0 and sum(1 for h in mine if h.plugin) >= limit:
                raise wsman.quota_max_shells(limit, quotas.plugin_max_shells_fault_code)
        limit = quotas.winrs_max_shells_per_user
        if limit > 0 and len(mine) >= limit:
            raise wsman.quota_max_shells(limit)

    def _admit_command(self, shell: Shell) -> None:
        """Refuse a Command while the shell already runs its quota of commands (each one is
        a thread here: the plug-in's MaxConcurrentCommandsPerShell, WinRS's
        MaxProcessesPerShell; see `Quotas`)."""
        quotas = self.settings.quotas
        with shell.cond:
            if isinstance(shell, PSRPShell):
                running = sum(1 for p in shell.pipes.values() if not p.finished)
                limit, code = (
                    quotas.plugin_max_concurrent_commands_per_shell,
                    wsman.CODE_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ,
                )
                what = "commands"
            else:
                running = sum(1 for p in shell.procs.values() if not p.finished)
                limit, code = (
                    quotas.winrs_max_processes_per_shell,
                    quotas.winrs_max_processes_fault_code,
                )
                what = "processes"
        if 0 < limit <= running:
            raise wsman.quota_max_commands(limit, code, what)

    def _idle_timeout(self, plugin: bool) -> float:
        quotas = self.settings.quotas
        ms = quotas.plugin_idle_timeout_ms if plugin else quotas.winrs_idle_timeout_ms
        return ms / 1000.0

    def owns(self, shell_id: str, user: str) -> bool:
        """Is `shell_id` a shell `user` created? A shell belongs to the user who created it:
        no other user may run, read, signal, delete, get or list it (Connect-PSSession: "you
        cannot connect to sessions that were started by other users"). The one check every
        shell operation (and a listing of shells) goes through."""
        with self.lock:
            held = self._held.get(shell_id.upper())
        return held is not None and held.owner == user.lower()

    def _foreign(self, shell_id: str) -> wsman.WSManFault:
        """The fault for another user's shell (`HostFacts.foreign_shell_fault`, [UNCONFIRMED])."""
        if self.settings.host.foreign_shell_fault == "shell_not_found":
            return wsman.shell_not_found(shell_id)
        return wsman.access_denied()

    def _shell(self, req: wsman.Request, user: str) -> Shell:
        shell_id = req.selectors.get("ShellId", "")
        if not shell_id:
            raise wsman.WSManFault(
                wsman.CODE_SHELL_NOT_FOUND,
                "The WS-Management service cannot process the request because the request "
                "contained invalid selectors for the resource.",
            )
        with self.lock:
            shell = self.shells.get(shell_id.upper())
        if shell is None or (
            req.resource_uri
            and req.resource_uri.lower()
            not in (shell.resource_uri.lower(), wsman.RESOURCE_SHELL.lower())
        ):
            raise wsman.shell_not_found(shell_id)
        if not self.owns(shell.shell_id, user):
            raise self._foreign(shell_id)
        return shell

    def _get(self, req: wsman.Request, user: str) -> bytes:
        uri = req.resource_uri.lower()
        if uri == wsman.RESOURCE_CONFIG_WINRS.lower():
            return wsman.response(req, [wsman.winrs_config_element(self._winrs_values())])
        if uri == wsman.RESOURCE_CONFIG_PLUGIN.lower():
            name = req.selectors.get("Name", "")
            if name.lower() != "microsoft.powershell":
                raise wsman.WSManFault(
                    wsman.CODE_INTERNAL,
                    "The WS-Management service cannot process the request. The service cannot "
                    "find the resource identified by the resource URI and selectors.",
                )
            quotas = self._plugin_values()
            return wsman.response(req, [wsman.plugin_config_element(name.lower(), quotas)])
        if uri.startswith(wsman.RESOURCE_CONFIG.lower()):
            return wsman.response(req, [wsman.config_element(self.config.max_envelope_kb)])
        shell = self._shell(req, user)
        with self.lock:
            held = self._held.get(shell.shell_id)
            if held is not None:  # any request on the shell resets its idle time
                held.last = self.config.clock()
        idle = held.idle_timeout if held is not None else 7200.0
        info = wsman.shell_element(
            shell.shell_id, shell.resource_uri, "", "", shell.shell_info(), idle_timeout=idle
        )
        return wsman.response(req, [info])

    def _winrs_values(self) -> dict[str, int]:
        q = self.settings.quotas
        return {
            "IdleTimeout": q.winrs_idle_timeout_ms,
            "MaxConcurrentUsers": q.winrs_max_concurrent_users,
            "MaxProcessesPerShell": q.winrs_max_processes_per_shell,
            "MaxMemoryPerShellMB": q.winrs_max_memory_per_shell_mb,
            "MaxShellsPerUser": q.winrs_max_shells_per_user,
        }

    def _plugin_values(self) -> dict[str, int]:
        q = self.settings.quotas
        return {
            "MaxIdleTimeoutms": q.plugin_max_idle_timeout_ms,
            "MaxConcurrentUsers": q.plugin_max_concurrent_users,
            "IdleTimeoutms": q.plugin_idle_timeout_ms,
            "MaxProcessesPerShell": q.plugin_max_processes_per_shell,
            "MaxMemoryPerShellMB": q.plugin_max_memory_per_shell_mb,
            "MaxConcurrentCommandsPerShell": q.plugin_max_concurrent_commands_per_shell,
            "MaxShells": q.plugin_max_shells,
            "MaxShellsPerUser": q.plugin_max_shells_per_user,
        }

    def _create(self, req: wsman.Request, user: str, client_ip: str) -> bytes:
        uri = req.resource_uri
        body_shell = req.body.find("rsp:Shell", wsman.NS)
        if body_shell is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Create needs an rsp:Shell body.")
        shell_id = (body_shell.attrib.get("ShellId") or str(uuid.uuid4())).upper()
        try:
            uuid.UUID(shell_id)
        except ValueError:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "ShellId is not a GUID.") from None

        def factory() -> Any:
            return self.engine.open_runspace(user)

        shell: Shell
        if uri.lower() == wsman.RESOURCE_PWSH.lower():
            shell = PSRPShell(shell_id, factory)
        elif uri.lower() == wsman.RESOURCE_CMD.lower():
            shell = CmdShell(shell_id, factory, req.options.get("WINRS_CODEPAGE", "437"))
        else:
            raise wsman.WSManFault(
                wsman.CODE_DESTINATION_UNREACHABLE,
                f"The WS-Management service cannot process the request. The resource URI "
                f"{uri[:200]} was not found in the WS-Management catalog.",
            )
        plugin = isinstance(shell, PSRPShell)
        idle = self._idle_timeout(plugin)
        with self.lock:
            if shell_id in self.shells:
                raise wsman.WSManFault(wsman.CODE_ALREADY_EXISTS, "The shell already exists.")
            try:
                self._admit(user, plugin)
            except wsman.WSManFault:
                self.quota_refusals += 1
                shell.close()
                raise
            self.shells[shell_id] = shell
            self._held[shell_id] = _Held(user.lower(), plugin, idle, self.config.clock(), 1)
            self._born[shell_id] = (user, client_ip, self.config.clock())
        try:
            shell.create(req)
        except Exception:
            self._forget(shell_id)
            shell.close()
            raise
        self._touch(shell_id, -1)
        created = wsman.resource_created(self.endpoint, uri, shell_id)
        info = wsman.shell_element(
            shell_id, uri, user, client_ip, shell.shell_info(), idle_timeout=idle
        )
        return wsman.response(req, [created, info])

    def close_all(self) -> None:
        with self.lock:
            shells = list(self.shells.values())
            self.shells.clear()
            self._held.clear()
        for shell in shells:
            shell.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.config.idle_timeout)
        # Headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every exchange on a keep-alive connection.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.auth = ConnectionAuth(self.server.auth_config)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        """Wait for a request under the idle timeout, then give its header `header_wait`."""
        try:
            started = self.rfile.peek(1)  # type: ignore[attr-defined]
        except (OSError, ValueError):
            self.close_connection = True
            return
        if not started:
            self.close_connection = True
            return
        self.server.watch_header(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.header_done(self.connection)

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        finally:
            self.server.header_done(self.connection)

    # -- answers ---------------------------------------------------------------------------

    def _answer(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        if body and content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the socket without answering (the client sees a broken connection)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        self._answer(405, close=False, headers=[("Allow", "POST")])

    def do_PUT(self) -> None:
        self.do_GET()

    def do_DELETE(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        srv = self.server
        srv.config.sleep(
            srv.settings.costs.http_exchange
        ) if srv.settings.costs.http_exchange else None
        body = self._read_body()
        if body is None:
            return
        extra = self._authenticate()
        if extra is None:
            return

        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith(
            ("multipart/encrypted", "multipart/x-multi-encrypted")
        )
        if not body:
            self._answer(200, headers=extra)  # the empty POST that sets up encryption
            return
        body = self._plain_body(body, content_type, encrypted=encrypted, extra=extra)
        if body is None:
            return

        user = self.auth.user or ""
        status, answer = self._wsman(body, user)
        if status == 0:
            self._drop()
            return
        if encrypted and answer and self.auth.can_encrypt:
            answer, content_type = self.auth.wrap_body(answer)
            self._answer(status, answer, content_type, extra)
        else:
            self._answer(status, answer, "application/soap+xml;charset=UTF-8", extra)

    def _read_body(self) -> bytes | None:
        """The request body of a POST to /wsman, or None once the request is answered."""
        path = self.path.split("?", 1)[0].rstrip("/").lower()
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self._answer(411, close=True)
            return None
        try:
            length = int(length_text or "0")
        except ValueError:
            self._answer(400, close=True)
            return None
        if length < 0:
            self._answer(400, close=True)
            return None
        if length > wsman.MAX_BODY_BYTES:
            self._answer(413, close=True)
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            self.close_connection = True
            return None
        if path != "/wsman":
            self._answer(404)
            return None
        return body

    def _authenticate(self) -> list[tuple[str, str]] | None:
        """The headers the answer carries once authenticated, or None once 401 is answered."""
        try:
            challenge = self.auth.authenticate(self.headers.get("Authorization"))
        except AuthError as exc:
            log.info("auth failed from %s: %s", self.client_address[0], exc)
            self._answer(401, headers=[("WWW-Authenticate", h) for h in self.auth.offer()])
            return None
        if challenge is not None:
            self._answer(401, headers=[("WWW-Authenticate", h) for h in challenge.headers])
            return None
        extra: list[tuple[str, str]] = []
        final = self.auth.final_header()
        if final:
            extra.append(("WWW-Authenticate", final))
        return extra

    def _plain_body(
        self, body: bytes, content_type: str, *, encrypted: bool, extra: list[tuple[str, str]]
    ) -> bytes | None:
        """The SOAP envelope (unwrapped when encrypted), or None once the request is refused."""
        srv = self.server
        if encrypted:
            try:
                return self.auth.unwrap(body, content_type)
            except EncryptionError as exc:
                log.info("bad encrypted body: %s", exc)
                self._answer(400, headers=extra)
                return None
        if not srv.https and (
            self.auth.scheme == "negotiate" or not srv.auth_config.allow_unencrypted
        ):
            # WinRM with AllowUnencrypted=false: plaintext SOAP over HTTP is refused.
            self._answer(401, headers=[("WWW-Authenticate", h) for h in self.auth.offer()])
            self.auth.reset()
            return None
        return body

    def _wsman(self, body: bytes, user: str) -> tuple[int, bytes]:
        """(HTTP status, body) for one WSMan request; status 0 = drop the connection."""
        srv = self.server
        settings = srv.settings
        with settings.lock:
            settings.request_count += 1
            n = settings.request_count
            faults = settings.faults
            drop = faults.drop_connection_on_request == n
            http_error = faults.http_error_status if faults.http_error_on_request == n else 0
            fault_code = faults.wsman_fault_code if faults.wsman_fault_on_request == n else 0
        if drop:
            return 0, b""
        if http_error:
            return http_error, b""
        try:
            req = wsman.parse_request(body)
        except wsman.WSManFault as fault:
            return fault.http_status, wsman.fault_bytes(fault, wsman.try_message_id(body))
        if fault_code:
            injected = wsman.WSManFault(fault_code, "Injected fault.")
            return 500, wsman.fault_bytes(injected, req.message_id)
        try:
            return 200, srv.service.handle(req, user, self.client_address[0])
        except wsman.DropConnection:
            return 0, b""
        except wsman.WSManFault as fault:
            return fault.http_status, wsman.fault_bytes(fault, req.message_id)
        except Exception:
            log.exception("internal error on %s", req.action)
            internal = wsman.WSManFault(wsman.CODE_INTERNAL, "Internal error in the emulator.")
            return 500, wsman.fault_bytes(internal, req.message_id)


class EmulatorHTTPServer(http.server.ThreadingHTTPServer):
    """Threaded HTTP(S) server; TLS handshakes happen on the connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(  # noqa: PLR0913 - keyword-only: the parts the handlers share
        self,
        address: tuple[str, int],
        *,
        service: WSManService,
        settings: EmulatorSettings,
        auth_config: AuthConfig,
        config: ServerConfig,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.auth_config = auth_config
        self.config = config
        self.ssl_context = ssl_context
        self.https = ssl_context is not None
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()
        #: Connections taken (a thread each), for the service's MaxConnections.
        self._active = 0
        #: Sockets reading a request header, and when HeaderWait cuts them.
        self._header_deadlines: dict[Any, float] = {}
        self._stopped = threading.Event()
        super().__init__(address, _Handler)
        threading.Thread(target=self._cut_slow_headers, daemon=True, name="header-wait").start()

    # -- MaxConnections and HeaderWait -----------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to the service's MaxConnections; beyond, 503 (over
        HTTP; over HTTPS the connection is closed before its handshake [UNCONFIRMED])."""
        cap = self.settings.quotas.max_connections
        with self._open_lock:
            full = 0 < cap <= self._active
            if not full:
                self._active += 1
        if full:
            log.info("MaxConnections (%d) reached: refusing %s", cap, client_address)
            with contextlib.suppress(OSError):
                if self.ssl_context is None:
                    request.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nServer: Microsoft-HTTPAPI/2.0\r\n"
                        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                    )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._open_lock:
                self._active -= 1
            raise

    def watch_header(self, sock: Any) -> None:
        with self._open_lock:
            self._header_deadlines[sock] = time.monotonic() + self.config.header_wait

    def header_done(self, sock: Any) -> None:
        with self._open_lock:
            self._header_deadlines.pop(sock, None)

    def _cut_slow_headers(self) -> None:
        while not self._stopped.wait(0.1):
            now = time.monotonic()
            with self._open_lock:
                late = [s for s, when in self._header_deadlines.items() if when <= now]
                for sock in late:
                    del self._header_deadlines[sock]
            for sock in late:
                log.info("HeaderWait expired: dropping a connection")
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._stopped.set()
        super().server_close()

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw = request
        with self._open_lock:
            self._open.add(raw)
        try:
            if self.ssl_context is not None:
                try:
                    request.settimeout(10)
                    request = self.ssl_context.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    log.debug("TLS handshake failed: %s", exc)
                    return
            super().finish_request(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(raw)
                self._active -= 1

    def close_connections(self) -> None:
        """Cut every open keep-alive connection (a server going away does the same)."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)
