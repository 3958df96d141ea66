"""Python API: run an emulated ConfigMgr site behind a real WinRM endpoint on 127.0.0.1.

    with Emulator(seed="demo") as emu:
        client = pypsrp.client.Client(emu.host, port=emu.port, ssl=False, auth="ntlm",
                                      username=DEFAULT_USER, password=DEFAULT_PASSWORD)
        ...
        emu.state.call_log()    # what the cmdlets saw (secrets masked)

The server runs in a background thread; `restart()` closes everything (shells, state file) and
reopens on the same port and the same state file, which is how tests prove that no committed
write is lost when a site server goes away.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from cmproxy.emulator import _extra, certs, seeds, state  # noqa: F401 - _extra: names the extra first
from cmproxy.emulator.engine.api import Engine
from cmproxy.emulator.http_auth import AuthConfig, UserStore, tls_server_end_point
from cmproxy.emulator.server import EmulatorHTTPServer, ServerConfig, WSManService
from cmproxy.emulator.settings import EmulatorSettings

#: The user every emulator accepts unless told otherwise.
DEFAULT_USER = "CONTOSO\\cmadmin"
DEFAULT_PASSWORD = "Emulat0r-Passw0rd!"  # noqa: S105 - a well-known test credential

EngineFactory = Callable[[Any, EmulatorSettings], Engine]


def default_engine_factory(
    state: Any, settings: EmulatorSettings, *, console_installed: bool = True
) -> Engine:
    """The engine package's SiteEngine over the site state (imported late: it is heavy)."""
    module = importlib.import_module("cmproxy.emulator.engine.runspace")
    engine: Engine = module.SiteEngine(state, settings, console_installed=console_installed)
    return engine


def open_state(path: str, seed: str) -> Any:
    """Open (and on first use seed) the SQLite site state."""
    site_state = state.SiteState(path)
    seeds.apply_seed(site_state, seed)
    return site_state


class Emulator:
    """An emulated site on a free port, served from a background thread."""

    def __init__(  # noqa: PLR0913 - the public constructor: one keyword per emulator knob
        self,
        seed: str = "demo",
        *,
        users: dict[str, str] | None = None,
        https: bool = False,
        state_path: str | None = None,
        settings: EmulatorSettings | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        allow_unencrypted: bool = False,
        allow_basic: bool = False,
        allow_negotiate: bool = True,
        allow_kerberos: bool = True,
        allow_credssp: bool = False,
        keytab: str | None = None,
        receive_timeout: float = 20.0,
        engine_factory: EngineFactory | None = None,
        console_installed: bool = True,
    ) -> None:
        self.seed = seed
        self.users = dict(users) if users else {DEFAULT_USER: DEFAULT_PASSWORD}
        self.https = https
        self.settings = settings if settings is not None else EmulatorSettings()
        self.host = host
        self.port = port
        self.allow_unencrypted = allow_unencrypted
        self.allow_basic = allow_basic
        self.allow_negotiate = allow_negotiate
        self.allow_kerberos = allow_kerberos
        self.allow_credssp = allow_credssp
        #: The service keytab for Kerberos; set as KRB5_KTNAME (process-global) on start.
        #: None: the default keytab (KRB5_KTNAME as it is, else /etc/krb5.keytab).
        self.keytab = keytab
        self.config = ServerConfig(receive_timeout=receive_timeout)
        if engine_factory is not None and not console_installed:
            raise ValueError("console_installed applies to the default engine only")
        self.console_installed = console_installed
        self._engine_factory: EngineFactory = engine_factory or functools.partial(
            default_engine_factory, console_installed=console_installed
        )
        self._tmpdir: str | None = None
        if state_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="cmproxy-emulator-")
            state_path = os.path.join(self._tmpdir, "site.sqlite")
        self.state_path = state_path
        self._certs: certs.CertFiles | None = None
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.state: Any = None
        self.engine: Engine | None = None
        self.service: WSManService | None = None

    # -- faces -----------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/wsman"

    @property
    def cert_path(self) -> str | None:
        """PEM of the self-signed certificate (also its CA) when https, else None."""
        return self._certs.cert_path if self._certs else None

    @property
    def username(self) -> str:
        return next(iter(self.users))

    @property
    def password(self) -> str:
        return self.users[self.username]

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        UserStore.register(self.users)
        if self.keytab is not None:
            os.environ["KRB5_KTNAME"] = self.keytab  # what a GSSAPI acceptor reads
        self.state = open_state(self.state_path, self.seed)
        self.engine = self._engine_factory(self.state, self.settings)
        ssl_context = None
        bindings = None
        if self.https:
            if self._certs is None:
                cert_dir = self._tmpdir or tempfile.mkdtemp(prefix="cmproxy-emulator-tls-")
                self._tmpdir = self._tmpdir or cert_dir
                self._certs = certs.generate(cert_dir)
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(self._certs.cert_path, self._certs.key_path)
            bindings = tls_server_end_point(self._certs.der)
        auth = AuthConfig(
            users=self.users,
            https=self.https,
            channel_bindings=bindings,
            allow_unencrypted=self.allow_unencrypted,
            allow_basic=self.allow_basic,
            allow_negotiate=self.allow_negotiate,
            allow_kerberos=self.allow_kerberos,
            allow_credssp=self.allow_credssp,
        )
        self.service = WSManService(self.engine, self.settings, self.config)
        server = EmulatorHTTPServer(
            (self.host, self.port),
            service=self.service,
            settings=self.settings,
            auth_config=auth,
            config=self.config,
            ssl_context=ssl_context,
        )
        self.port = server.server_address[1]
        self.service.endpoint = self.endpoint
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"cmproxy-emulator-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the state file (the file itself is kept until close())."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if self.service is not None:
                self.service.close_all()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        engine, self.engine = self.engine, None
        close = getattr(engine, "close", None)
        if callable(close):
            close()
        if self.state is not None:
            self.state.close()
            self.state = None

    def restart(self) -> Emulator:
        """Close everything and reopen on the same port and state file (a site server reboot)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
