"""Where and how to reach a site's SMS Provider: a frozen value that never connects.

`ConnectionInfo` is configuration only (principle 2: configuration is not a connection). It
can be built from keyword arguments, from `CMPROXY_*` environment variables
(`ConnectionInfo.from_env`) or from the option and variable names of Ansible's `psrp`
connection plugin (`ConnectionInfo.from_ansible`). A live `cmproxy.session.Session` is opened
from it.

Safe by default: HTTPS with certificate validation, message encryption wherever the
authentication protocol can provide it, Basic authentication refused over plain HTTP unless
explicitly allowed. The password is a `Secret` and never appears in a repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, get_args

import attrs

from cmproxy._exceptions import ValidationError
from cmproxy.model import Secret, validate_site_code
from cmproxy.transport_names import DEFAULT_TRANSPORT, TRANSPORT_NAMES

__all__ = [
    "ANSIBLE_OPTION_NAMES",
    "ENV_VARS",
    "Auth",
    "ConnectionInfo",
    "MessageEncryption",
    "Scheme",
    "TransportName",
]

Auth = Literal["negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate"]
Scheme = Literal["https", "http"]
MessageEncryption = Literal["auto", "always", "never"]
#: A name in `cmproxy.transport_names.TRANSPORTS` (checked by `ConnectionInfo`): a `str`, as
#: the table, not a Literal, is the one list of transports.
TransportName = str

#: Runspace pools (WinRM shells) one session opens at most, by default.
DEFAULT_MAX_POOLS = 12
#: Shells the cmproxy processes of one account hold at most on one endpoint, by default:
#: below the PowerShell plug-in's MaxShellsPerUser (25; WinRS: 30), leaving room for the
#: admin's own sessions (console, Enter-PSSession).
DEFAULT_ACCOUNT_MAX_SHELLS = 20
#: Seconds a session waits for a shell when the quota is full before giving up, by default.
DEFAULT_QUOTA_WAIT = 120.0

#: Auth protocols that can encrypt WinRM messages themselves (pypsrp/pywinrm).
_ENCRYPTING_AUTHS = frozenset({"negotiate", "ntlm", "kerberos", "credssp"})
_PASSWORD_AUTHS = frozenset({"negotiate", "ntlm", "credssp", "basic"})


def _choice(field: str, allowed: tuple[str, ...]) -> Any:
    def convert(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in allowed:
            raise ValidationError(field, value, f"must be one of: {', '.join(allowed)}")
        return text

    return convert


def _to_secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    if value == "":
        return None
    return Secret(value)


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


def _optional_site_code(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return validate_site_code(value, "site_code")


def _port(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValidationError("port", value, "must be a whole number from 1 to 65535") from None
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise ValidationError("port", value, "must be from 1 to 65535")
    return port


def _seconds(field: str) -> Any:
    def convert(value: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ValidationError(field, value, "must be a number of seconds") from None
        if seconds <= 0:
            raise ValidationError(field, value, "must be more than 0 seconds")
        return seconds

    return convert


def _count(field: str, minimum: int) -> Any:
    def convert(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValidationError(field, value, "must be a whole number") from None
        if isinstance(value, bool) or (isinstance(value, float) and value != number):
            raise ValidationError(field, value, "must be a whole number")
        if number < minimum:
            raise ValidationError(field, value, f"must be {minimum} or more")
        return number

    return convert


def _max_pools(value: Any) -> int:
    return _count("max_pools", 1)(value)  # type: ignore[no-any-return]


def _account_max_shells(value: Any) -> int:
    return _count("account_max_shells", 0)(value)  # type: ignore[no-any-return]


def _quota_wait(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValidationError("quota_wait", value, "must be a number of seconds") from None
    if seconds < 0:
        raise ValidationError("quota_wait", value, "must be 0 seconds or more")
    return seconds


def _bool(field: str) -> Any:
    def convert(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on", "y", "validate"}:
            return True
        if text in {"0", "false", "no", "off", "n", "ignore"}:
            return False
        raise ValidationError(field, value, "must be true or false")

    return convert


def _server(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            "server", value, "must be the host name or address of the SMS Provider"
        )
    text = value.strip()
    if "://" in text or "/" in text:
        raise ValidationError(
            "server", value, "give only the host name; set scheme, port and path separately"
        )
    return text


def _scheme(value: Any) -> Scheme:
    return _choice("scheme", get_args(Scheme))(value)  # type: ignore[no-any-return]


def _auth(value: Any) -> Auth:
    return _choice("auth", get_args(Auth))(value)  # type: ignore[no-any-return]


def _encryption(value: Any) -> MessageEncryption:
    return _choice("message_encryption", get_args(MessageEncryption))(value)  # type: ignore[no-any-return]


def _transport(value: Any) -> TransportName:
    return _choice("transport", TRANSPORT_NAMES)(value)  # type: ignore[no-any-return]


def _cert_validation(value: Any) -> bool:
    return _bool("cert_validation")(value)  # type: ignore[no-any-return]


def _allow_basic(value: Any) -> bool:
    return _bool("allow_basic_over_http")(value)  # type: ignore[no-any-return]


def _ignore_proxy(value: Any) -> bool:
    return _bool("ignore_proxy")(value)  # type: ignore[no-any-return]


def _connection_timeout(value: Any) -> float:
    return _seconds("connection_timeout")(value)  # type: ignore[no-any-return]


def _read_timeout(value: Any) -> float:
    return _seconds("read_timeout")(value)  # type: ignore[no-any-return]


def _operation_timeout(value: Any) -> float:
    return _seconds("operation_timeout")(value)  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class ConnectionInfo:
    """Everything needed to open a session to one SMS Provider; validated, never connects.

    `port` defaults to 5986 for https and 5985 for http. `message_encryption="auto"` encrypts
    WinRM messages over HTTP (HTTPS is already encrypted by TLS); "never" must be chosen
    explicitly. `cert_validation=False` is the only way to skip certificate checks; prefer
    `ca_cert`, a PEM bundle that signs the server's certificate.
    """

    server: str = attrs.field(converter=_server)
    username: str | None = attrs.field(default=None, converter=_optional_text)
    password: Secret | None = attrs.field(default=None, converter=_to_secret)
    port: int | None = attrs.field(default=None, converter=_port)
    scheme: Scheme = attrs.field(default="https", converter=_scheme)
    path: str = attrs.field(default="wsman")
    auth: Auth = attrs.field(default="negotiate", converter=_auth)
    cert_validation: bool = attrs.field(default=True, converter=_cert_validation)
    ca_cert: str | None = attrs.field(default=None, converter=_optional_text)
    message_encryption: MessageEncryption = attrs.field(default="auto", converter=_encryption)
    allow_basic_over_http: bool = attrs.field(default=False, converter=_allow_basic)
    certificate_pem: str | None = attrs.field(default=None, converter=_optional_text)
    certificate_key_pem: str | None = attrs.field(default=None, converter=_optional_text)
    connection_timeout: float = attrs.field(default=30.0, converter=_connection_timeout)
    read_timeout: float = attrs.field(default=60.0, converter=_read_timeout)
    operation_timeout: float = attrs.field(default=20.0, converter=_operation_timeout)
    site_code: str | None = attrs.field(default=None, converter=_optional_site_code)
    transport: TransportName = attrs.field(default=DEFAULT_TRANSPORT, converter=_transport)
    configuration_name: str = attrs.field(default="Microsoft.PowerShell")
    #: An HTTP proxy URL for reaching the WinRM endpoint (not the site's proxy!).
    proxy: str | None = attrs.field(default=None, converter=_optional_text)
    #: Ignore HTTP(S)_PROXY environment variables and connect directly.
    ignore_proxy: bool = attrs.field(default=False, converter=_ignore_proxy)
    #: Full path of ConfigurationManager.psd1 on the server, when it is not found otherwise.
    module_path: str | None = attrs.field(default=None, converter=_optional_text)
    #: The SMS Provider's FQDN for `New-PSDrive -Root` (default: the server's own name).
    provider_machine_name: str | None = attrs.field(default=None, converter=_optional_text)
    #: Runspace pools (each one WinRM shell) one session opens at most for concurrent steps.
    max_pools: int = attrs.field(default=DEFAULT_MAX_POOLS, converter=_max_pools)
    #: Shells all cmproxy processes of this OS user hold at most on this endpoint with this
    #: account, across processes (slot files in ~/.cmproxy/shells, or $CMPROXY_STATE_DIR);
    #: keep it below the endpoint's MaxShellsPerUser. 0 = no cross-process cap.
    account_max_shells: int = attrs.field(
        default=DEFAULT_ACCOUNT_MAX_SHELLS, converter=_account_max_shells
    )
    #: Seconds a session waits for a free shell (the quota is full) before QuotaExceededError.
    quota_wait: float = attrs.field(default=DEFAULT_QUOTA_WAIT, converter=_quota_wait)
    #: The host name Kerberos puts in the SPN (WSMAN/, HTTP/<name>) when `server` is an
    #: address or an alias the domain does not know; pypsrp's and Ansible psrp's option.
    negotiate_hostname_override: str | None = attrs.field(default=None, converter=_optional_text)

    def __attrs_post_init__(self) -> None:
        if self.operation_timeout >= self.read_timeout:
            raise ValidationError(
                "operation_timeout",
                self.operation_timeout,
                f"must be shorter than read_timeout ({self.read_timeout:g}s): the server holds "
                "a request open for up to operation_timeout before answering",
            )
        if self.auth == "basic" and self.scheme == "http" and not self.allow_basic_over_http:
            raise ValidationError(
                "auth",
                "basic",
                "Basic authentication over plain HTTP would send the password unencrypted; "
                "use scheme='https', an auth that encrypts messages (negotiate, ntlm, kerberos), "
                "or set allow_basic_over_http=True if you really mean it",
            )
        if self.message_encryption == "always" and self.auth not in _ENCRYPTING_AUTHS:
            raise ValidationError(
                "message_encryption",
                "always",
                f"auth={self.auth!r} cannot encrypt messages; use negotiate, ntlm, kerberos or "
                "credssp, or message_encryption='auto' over https",
            )
        if self.auth == "certificate":
            if self.scheme != "https":
                raise ValidationError("auth", "certificate", "certificate auth needs https")
            if not (self.certificate_pem and self.certificate_key_pem):
                raise ValidationError(
                    "certificate_pem",
                    self.certificate_pem,
                    "certificate auth needs certificate_pem and certificate_key_pem",
                )
        if self.auth == "kerberos" and self.transport == "winrm" and self.password is not None:
            raise ValidationError(
                "password",
                "********",
                "transport='winrm' with auth='kerberos' uses the Kerberos ticket cache (kinit "
                "first) and cannot take a password; drop the password or use transport='psrp', "
                "which gets a ticket from it",
            )
        if self.auth in _PASSWORD_AUTHS and self.username is None:
            raise ValidationError("username", None, f"auth={self.auth!r} needs a username")
        if self.ca_cert is not None and not self.cert_validation:
            raise ValidationError(
                "ca_cert",
                self.ca_cert,
                "was given with cert_validation=False; drop one of them (a CA bundle is only "
                "used to validate)",
            )

    # -- derived values ---------------------------------------------------------------------

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 5986 if self.scheme == "https" else 5985

    @property
    def endpoint(self) -> str:
        """The WinRM URL, e.g. `https://cm01.contoso.com:5986/wsman` (no credentials)."""
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{self.scheme}://{host}:{self.effective_port}/{self.path.lstrip('/')}"

    @property
    def encrypts(self) -> bool:
        """True when traffic is encrypted (TLS, or WinRM message encryption over HTTP)."""
        if self.scheme == "https":
            return True
        return self.message_encryption != "never" and self.auth in _ENCRYPTING_AUTHS

    def evolve(self, **changes: Any) -> ConnectionInfo:
        """A copy with some fields changed (validated again)."""
        return attrs.evolve(self, **changes)

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def from_env(
        cls,
        prefix: str = "CMPROXY_",
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ConnectionInfo:
        """Build from environment variables (`ENV_VARS` lists them); `overrides` win.

        `prefix="CMPROXY_LIVE_"` reads the live contract suite's variables.
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        for field_name in ENV_VARS:
            value = env.get(prefix + field_name.upper())
            if value is not None and value != "":
                kwargs[field_name] = value
        kwargs.update(overrides)
        if "server" not in kwargs:
            raise ValidationError(
                f"{prefix}SERVER", None, "is not set; it names the SMS Provider to connect to"
            )
        return cls(**kwargs)

    @classmethod
    def from_ansible(cls, options: Mapping[str, Any], **overrides: Any) -> ConnectionInfo:
        """Build from Ansible `psrp` connection plugin options or host variables.

        Accepts the plugin's option names (`remote_addr`, `remote_user`, `remote_password`,
        `port`, `protocol`, `path`, `auth`, `cert_validation`, `ca_cert`/`cert_trust_path`,
        `connection_timeout`, `read_timeout`, `operation_timeout`, `message_encryption`,
        `proxy`, `ignore_proxy`, `certificate_pem`, `certificate_key_pem`,
        `configuration_name`) and their variables (`ansible_host`, `ansible_user`,
        `ansible_password`, `ansible_port`, `ansible_psrp_*`). Other keys are ignored, so a
        whole hostvars dict can be passed. Like the plugin, the protocol defaults to https
        unless the port is 5985.
        """
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            target = ANSIBLE_OPTION_NAMES.get(key)
            if target is None or value is None or value == "":
                continue
            kwargs.setdefault(target, value)
        if "scheme" not in kwargs:
            kwargs["scheme"] = "http" if _port(kwargs.get("port")) == 5985 else "https"
        validation = kwargs.get("cert_validation")
        if isinstance(validation, str) and validation.lower() not in {"validate", "ignore"}:
            raise ValidationError(
                "cert_validation", validation, "Ansible's values are 'validate' or 'ignore'"
            )
        if validation is not None and not _bool("cert_validation")(validation):
            kwargs.pop("ca_cert", None)  # the plugin ignores ca_cert when validation is off
        kwargs.update(overrides)
        if "server" not in kwargs:
            raise ValidationError(
                "remote_addr", None, "is not set (ansible_host / ansible_psrp_host)"
            )
        return cls(**kwargs)

    def to_pypsrp_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `pypsrp.wsman.WSMan`, password included: never log them."""
        kwargs: dict[str, Any] = {
            "server": self.server,
            "port": self.effective_port,
            "username": self.username,
            "password": self.password.reveal() if self.password else None,
            "ssl": self.scheme == "https",
            "path": self.path,
            "auth": self.auth,
            "cert_validation": (self.ca_cert or True) if self.cert_validation else False,
            "connection_timeout": self.connection_timeout,
            "read_timeout": self.read_timeout,
            "operation_timeout": int(self.operation_timeout),
            "encryption": self.message_encryption,
            "proxy": self.proxy,
            "no_proxy": self.ignore_proxy,
        }
        if self.negotiate_hostname_override is not None:
            kwargs["negotiate_hostname_override"] = self.negotiate_hostname_override
        if self.auth == "certificate":
            kwargs["certificate_pem"] = self.certificate_pem
            kwargs["certificate_key_pem"] = self.certificate_key_pem
        return kwargs


#: Field name → environment variable suffix (the variable is `CMPROXY_` + upper-case name).
ENV_VARS: dict[str, str] = {
    name: "CMPROXY_" + name.upper()
    for name in (
        "server",
        "username",
        "password",
        "port",
        "scheme",
        "path",
        "auth",
        "cert_validation",
        "ca_cert",
        "message_encryption",
        "allow_basic_over_http",
        "certificate_pem",
        "certificate_key_pem",
        "connection_timeout",
        "read_timeout",
        "operation_timeout",
        "site_code",
        "transport",
        "configuration_name",
        "proxy",
        "ignore_proxy",
        "module_path",
        "provider_machine_name",
        "max_pools",
        "account_max_shells",
        "quota_wait",
        "negotiate_hostname_override",
    )
}

#: Ansible psrp plugin option and variable names → ConnectionInfo fields. Where several names
#: map to one field, the first one present in the mapping wins (options before variables).
ANSIBLE_OPTION_NAMES: dict[str, str] = {
    # options
    "remote_addr": "server",
    "remote_user": "username",
    "remote_password": "password",
    "port": "port",
    "protocol": "scheme",
    "path": "path",
    "auth": "auth",
    "cert_validation": "cert_validation",
    "ca_cert": "ca_cert",
    "cert_trust_path": "ca_cert",
    "connection_timeout": "connection_timeout",
    "read_timeout": "read_timeout",
    "operation_timeout": "operation_timeout",
    "message_encryption": "message_encryption",
    "proxy": "proxy",
    "ignore_proxy": "ignore_proxy",
    "certificate_pem": "certificate_pem",
    "certificate_key_pem": "certificate_key_pem",
    "configuration_name": "configuration_name",
    "negotiate_hostname_override": "negotiate_hostname_override",
    # variables
    "ansible_host": "server",
    "ansible_psrp_host": "server",
    "ansible_user": "username",
    "ansible_psrp_user": "username",
    "ansible_password": "password",
    "ansible_psrp_password": "password",
    "ansible_winrm_pass": "password",
    "ansible_winrm_password": "password",
    "ansible_port": "port",
    "ansible_psrp_port": "port",
    "ansible_psrp_protocol": "scheme",
    "ansible_psrp_path": "path",
    "ansible_psrp_auth": "auth",
    "ansible_psrp_cert_validation": "cert_validation",
    "ansible_psrp_cert_trust_path": "ca_cert",
    "ansible_psrp_ca_cert": "ca_cert",
    "ansible_psrp_connection_timeout": "connection_timeout",
    "ansible_psrp_read_timeout": "read_timeout",
    "ansible_psrp_operation_timeout": "operation_timeout",
    "ansible_psrp_message_encryption": "message_encryption",
    "ansible_psrp_proxy": "proxy",
    "ansible_psrp_ignore_proxy": "ignore_proxy",
    "ansible_psrp_certificate_pem": "certificate_pem",
    "ansible_psrp_certificate_key_pem": "certificate_key_pem",
    "ansible_psrp_configuration_name": "configuration_name",
    "ansible_psrp_negotiate_hostname_override": "negotiate_hostname_override",
}
