"""Typed, validated values for sites, servers and their proxy configuration.

Every value is a frozen attrs class validated at construction, so an invalid proxy can never
reach a plan, let alone a server. Validation errors are `ValidationError`s naming the field,
the value and the reason (and the rule where one applies). Secrets are `Secret` values that
never render: not in repr, str, equality or serialisation.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from cmproxy._exceptions import ValidationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_PROXY_PORT",
    "Account",
    "KnownAccount",
    "ProxySettings",
    "ProxySource",
    "Role",
    "Secret",
    "Site",
    "SiteState",
    "SiteSystemServer",
    "SiteType",
    "SupFlags",
    "validate_account_name",
    "validate_proxy_host",
    "validate_server_name",
    "validate_site_code",
]

#: The console's and the cmdlet's default proxy port (configmgr-cmdlets.md §4.1).
DEFAULT_PROXY_PORT = 80

_MASK = "********"


class Secret:
    """A password held for one purpose: to be sent as a SecureString. It never renders.

    Deliberately not an attrs class: `attrs.asdict`/`astuple` recurse into attrs values, and
    would hand out the clear text of every `ConnectionInfo`, `Account` or `ProxySettings` that
    holds one. As a plain value it comes out of them as itself, still masked (`str`, `repr`,
    `json.dumps(..., default=str)`); `copy` gives the same value, pickling is refused.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise ValidationError("password", _MASK, "must be a string")
        if value == "":
            raise ValidationError("password", _MASK, "must not be empty")
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret cannot be changed")

    def reveal(self) -> str:
        """The clear text, for the one place that turns it into a SecureString."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __copy__(self) -> Secret:
        return self  # immutable: a copy in this process is the same value, still masked

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled or copied out of the process")


def _to_secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


# A DNS label: letters (any script, so IDN names work), digits and inner hyphens, 1-63 chars.
_LABEL = re.compile(r"^(?!-)[^\W_](?:[^\W_]|-){0,62}(?<!-)$")
# sAMAccountName forbids these; '@' is refused separately with a UPN hint ("Naming
# conventions in Active Directory", KB 909264: all other printable characters are allowed).
_USER_FORBIDDEN = set('"/\\[]:;|=,+*?<>@')
# Non-printable: controls (C0, DEL, C1 such as U+0085 NEL), lone surrogates, and the line and
# paragraph separators U+2028, U+2029 (each a line break to some reader of the name).
_NON_PRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})
# "User logon name (pre-Windows 2000)": 20 characters or fewer (adschema a-samaccountname).
_SAM_MAX = 20
_DOMAIN = re.compile(r"^(?!-)[^\W_](?:[^\W_]|[-.])*$")
_SITE_CODE = re.compile(r"^[A-Za-z0-9]{3}$")
_RESERVED_SITE_CODES = frozenset({"AUX", "CON", "NUL", "PRN", "SMS"})


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]") if text.startswith("[") else text)
    except ValueError:
        return False
    return True


def _check_dns_name(field: str, value: str) -> None:
    problem = _dns_name_problem(value)
    if problem is not None:
        raise ValidationError(field, value, problem)


#: A read of the whole hierarchy checks every server's proxy host again (thousands, most the
#: same host): the check is a pure function of the text, so its answers are kept (the error
#: itself is raised afresh, naming the caller's field). Server names are all different: not
#: kept.
_HOSTS_KEPT = 1024


def _dns_name_problem(value: str) -> str | None:
    """What is wrong with `value` as a host name or FQDN (None: nothing)."""
    if len(value) > 253:
        return "is longer than 253 characters"
    labels = value.rstrip(".").split(".")
    for label in labels:
        if not _LABEL.match(label):
            return (
                f"label {label!r} is not a valid host name label "
                "(letters, digits and inner hyphens, 1-63 characters)"
            )
    if all(label.isdigit() for label in labels):
        return "looks like an IP address but is not a valid one"
    return None


@functools.lru_cache(maxsize=_HOSTS_KEPT)
def _proxy_host_problem(value: str) -> str | None:
    """What is wrong with `value` as a proxy host (None: nothing)."""
    if value == "" or value.strip() == "":
        return "must not be empty (R14: the console requires a name)"
    if value != value.strip():
        return "has leading or trailing white space"
    if "://" in value:
        return "is a URL; give only the host name and put the port in 'port'"
    if _is_ip(value):
        if ipaddress.ip_address(value.strip("[]")).is_unspecified:
            return "is the unspecified address; name a real proxy"
        return None
    if value.count(":") == 1 and value.rsplit(":", 1)[1].isdigit():
        return "contains a port; give the port in 'port' instead"
    return _dns_name_problem(value)


def validate_proxy_host(value: object, field: str = "proxy.server") -> str:
    """A proxy host: FQDN, host name, IPv4 or IPv6 — never empty, never a URL or host:port."""
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string (FQDN, host name, IPv4 or IPv6)")
    problem = _proxy_host_problem(value)
    if problem is not None:
        raise ValidationError(field, value, problem)
    return value


def validate_server_name(value: object, field: str = "server") -> str:
    """A site system server name: an FQDN or host name (ConfigMgr stores NetBIOS/FQDN names)."""
    if not isinstance(value, str) or value == "":
        raise ValidationError(field, value, "must be a non-empty host name or FQDN")
    if value.startswith("\\\\"):
        value = value[2:]
    _check_dns_name(field, value)
    return value


def validate_account_name(value: object, field: str = "proxy.account") -> str:
    r"""A ConfigMgr account in `DOMAIN\user` form; a UPN is refused with the form to use."""
    if not isinstance(value, str) or value == "":
        raise ValidationError(field, value, r"must be a non-empty 'DOMAIN\user' name")
    bad_char = next((c for c in value if unicodedata.category(c) in _NON_PRINTABLE), None)
    if bad_char is not None:
        raise ValidationError(
            field,
            value,
            f"contains the non-printable character U+{ord(bad_char):04X} "
            f"({unicodedata.name(bad_char, 'a control character')}); Windows account names "
            "allow printable characters only",
        )
    if "\\" not in value and "@" in value:
        user, _, domain = value.partition("@")
        raise ValidationError(
            field,
            value,
            rf"is a UPN; ConfigMgr accounts are 'DOMAIN\user' (for example "
            rf"'{domain.split('.')[0].upper() or 'DOMAIN'}\{user}')",
        )
    domain, sep, user = value.partition("\\")
    if not sep or not domain or not user:
        raise ValidationError(field, value, r"must be 'DOMAIN\user'")
    if not _DOMAIN.match(domain) or len(domain) > 255:
        raise ValidationError(field, value, f"domain part {domain!r} is not a valid domain name")
    bad = sorted(set(user) & _USER_FORBIDDEN)
    if bad:
        hint = " (a UPN is not accepted)" if "@" in bad else ""
        raise ValidationError(
            field, value, f"user part contains characters Windows forbids: {''.join(bad)}{hint}"
        )
    if user.strip(" .") != user:
        raise ValidationError(
            field,
            value,
            "user part is not a valid Windows account name (it starts or ends with a space "
            "or a period)",
        )
    if len(user) > _SAM_MAX:
        raise ValidationError(
            field,
            value,
            f"user part is {len(user)} characters; a sAMAccountName has {_SAM_MAX} characters "
            "at most",
        )
    return value


def validate_site_code(value: object, field: str = "site_code") -> str:
    """A ConfigMgr site code: three letters or digits, not a reserved name."""
    if not isinstance(value, str) or not _SITE_CODE.match(value):
        raise ValidationError(field, value, "must be exactly three letters or digits")
    if value.upper() in _RESERVED_SITE_CODES:
        raise ValidationError(field, value, "is reserved by Windows/ConfigMgr")
    return value.upper()


def _account_name(value: Any) -> str:
    return validate_account_name(value, "account.name")


def _site_code(value: Any) -> str:
    return validate_site_code(value, "site.code")


def _server_site_code(value: Any) -> str:
    return validate_site_code(value, "server.site_code")


def _account_site_code(value: Any) -> str:
    return validate_site_code(value, "account.site_code")


def _server_name(value: Any) -> str:
    return validate_server_name(value, "server.name")


def _validate_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("proxy.port", value, "must be a whole number from 1 to 65535")
    if not 1 <= value <= 65535:
        raise ValidationError("proxy.port", value, "must be from 1 to 65535")
    return value


@attrs.frozen
class Account:
    r"""A ConfigMgr account (`SMS_SCI_Reserved`), such as the site system proxy server account.

    The password is only for creating the account (`New-CMAccount`); it cannot be read back.
    """

    name: str = attrs.field(converter=_account_name)
    password: Secret | None = attrs.field(
        default=None, converter=_to_secret, repr=False, eq=False, hash=False
    )


@attrs.frozen(repr=False)
class ProxySettings:
    """The one proxy configuration of a site system server (R1), replaced whole on write (R2).

    `enabled=False` means "no proxy"; the other fields of a disabled proxy are not compared,
    because whether the product keeps them is [UNCONFIRMED] (configmgr-cmdlets.md §9).
    `account=None` means the server's System account connects (R3). The password is never
    compared: it cannot be read back from a site.
    """

    server: str | None = attrs.field(default=None)
    port: int = attrs.field(default=DEFAULT_PROXY_PORT)
    account: str | None = attrs.field(default=None)
    password: Secret | None = attrs.field(default=None, converter=_to_secret, eq=False, hash=False)
    enabled: bool = attrs.field(default=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValidationError("proxy.enabled", self.enabled, "must be true or false")
        _validate_port(self.port)
        if self.account is not None:
            validate_account_name(self.account)
        elif self.password is not None:
            raise ValidationError(
                "proxy.password", _MASK, "was given without an account; set 'account' too"
            )
        if self.server is not None:
            validate_proxy_host(self.server)
        elif self.enabled:
            raise ValidationError(
                "proxy.server", None, "must be set when the proxy is enabled (R14)"
            )

    @classmethod
    def disabled(cls) -> ProxySettings:
        """No proxy: the server's roles connect directly."""
        return cls(enabled=False)

    @property
    def uses_system_account(self) -> bool:
        """True when the hosting server's System account authenticates to the proxy (R3)."""
        return self.account is None

    def normalized(self) -> ProxySettings:
        """The value that matters for comparison: a disabled proxy has no other fields."""
        return self if self.enabled else ProxySettings.disabled()

    def same_as(self, other: ProxySettings) -> bool:
        """Equal in effect (disabled proxies are equal whatever stale fields they keep)."""
        return self.normalized() == other.normalized()

    def replace(self, **changes: Any) -> ProxySettings:
        """A copy with some fields changed (R2 is still whole replacement on the server)."""
        return attrs.evolve(self, **changes)

    def describe(self) -> str:
        if not self.enabled:
            return "no proxy"
        who = self.account if self.account else "System account"
        return f"{self.server}:{self.port} as {who}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, journals and diffs; the password is never included."""
        return {
            "enabled": self.enabled,
            "server": self.server,
            "port": self.port,
            "account": self.account,
        }

    def __repr__(self) -> str:
        secret = ", password=<hidden>" if self.password is not None else ""
        return (
            f"ProxySettings(enabled={self.enabled!r}, server={self.server!r}, "
            f"port={self.port!r}, account={self.account!r}{secret})"
        )


class SiteType(enum.Enum):
    """Where a site sits in the hierarchy (R9: secondary SUPs do not use the ADR option)."""

    CAS = "cas"
    PRIMARY = "primary"
    SECONDARY = "secondary"


def _site_type(value: SiteType | str) -> SiteType:
    if isinstance(value, SiteType):
        return value
    try:
        return SiteType(str(value).lower())
    except ValueError:
        raise ValidationError(
            "site.type", value, "must be one of: cas, primary, secondary"
        ) from None


def _optional_site_code(value: str | None) -> str | None:
    return None if value in (None, "") else validate_site_code(value, "site.parent")


@attrs.frozen
class Site:
    """A ConfigMgr site. `server` is its site server, which hosts R5/R12 connections."""

    code: str = attrs.field(converter=_site_code)
    type: SiteType = attrs.field(converter=_site_type)
    parent: str | None = attrs.field(default=None, converter=_optional_site_code)
    server: str | None = attrs.field(default=None)
    name: str = ""

    def __attrs_post_init__(self) -> None:
        if self.type is SiteType.CAS and self.parent is not None:
            raise ValidationError("site.parent", self.parent, "a CAS has no parent site")
        if self.type is SiteType.SECONDARY and self.parent is None:
            raise ValidationError(
                "site.parent", None, "a secondary site must name its parent primary site"
            )
        if self.server is not None:
            validate_server_name(self.server, "site.server")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (`cmproxy show --json`)."""
        return {
            "code": self.code,
            "type": self.type.value,
            "parent": self.parent,
            "server": self.server,
            "name": self.name,
        }


class ProxySource(enum.Enum):
    """Where a role's effective proxy comes from."""

    #: The hosting server's one shared proxy (R1), used with no further configuration.
    SERVER = "server"
    #: The proxy of the primary site server that manages the role (cloud DP, R5).
    MANAGING_SITE_SERVER = "managing primary site server"
    #: The hosting server's proxy, but only for the options switched on (SUP, R9).
    OPT_IN = "explicit opt-in"
    #: Not the site system proxy at all (2603 management point: SYSTEM WinINET proxy).
    NOT_SITE_SYSTEM_PROXY = "not the site system proxy"
    #: The role does not connect to the Internet.
    NONE = "none"


@attrs.frozen
class Role:
    """A site system role on one server. Subclasses state their proxy semantics."""

    #: The `RoleName` that `Get-CMSiteRole` reports (configmgr-cmdlets.md §3.2).
    ROLE_NAME: ClassVar[str] = ""
    #: Human name, as the console shows it.
    DISPLAY_NAME: ClassVar[str] = ""
    #: What the role connects to on the Internet ("" when it does not).
    CONNECTS_TO: ClassVar[str] = ""
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.NONE
    #: Which identity authenticates to the proxy (R3).
    CONNECTING_ACCOUNT: ClassVar[str] = ""
    #: The rule (proxy-rules.md) that describes the role's proxy use.
    RULE: ClassVar[str] = ""
    DEPRECATED: ClassVar[bool] = False
    #: Free-text caveats shown in plans and diagnostics.
    NOTES: ClassVar[tuple[str, ...]] = ()
    #: The proxy settings this role carries beyond its server's proxy (`cmproxy.settings`).
    SETTINGS: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return self.DISPLAY_NAME or self.ROLE_NAME

    @property
    def uses_server_proxy(self) -> bool:
        """Whether this role's traffic goes through its hosting server's proxy."""
        return self.PROXY_SOURCE in (ProxySource.SERVER, ProxySource.OPT_IN)

    def refusal(self, proxy: ProxySettings) -> str | None:
        """Why this role cannot work with `proxy` set on its own server, or None."""
        del proxy
        return None


def _roles(value: Iterable[Role]) -> tuple[Role, ...]:
    return tuple(value)


@attrs.frozen
class SiteSystemServer:
    """A computer hosting site system roles: one proxy, shared by all its roles (R1)."""

    name: str = attrs.field(converter=_server_name)
    site_code: str = attrs.field(converter=_server_site_code)
    proxy: ProxySettings = attrs.field(factory=ProxySettings.disabled)
    roles: tuple[Role, ...] = attrs.field(factory=tuple, converter=_roles)

    def role(self, kind: type[Role]) -> Role | None:
        """The first role of this kind on the server, if any."""
        return next((r for r in self.roles if isinstance(r, kind)), None)

    def has_role(self, kind: type[Role]) -> bool:
        return self.role(kind) is not None

    @property
    def key(self) -> str:
        return self.name.lower()


@attrs.frozen
class SupFlags:
    """The software update point's two proxy options (R9), stored on the SUP role (R10)."""

    use_proxy: bool = False
    use_proxy_for_adr: bool = False

    @property
    def any(self) -> bool:
        return self.use_proxy or self.use_proxy_for_adr

    def to_dict(self) -> dict[str, bool]:
        return {"use_proxy": self.use_proxy, "use_proxy_for_adr": self.use_proxy_for_adr}

    def describe(self) -> str:
        def onoff(flag: bool) -> str:
            return "on" if flag else "off"

        return f"sync={onoff(self.use_proxy)}, ADR={onoff(self.use_proxy_for_adr)}"


@attrs.frozen
class KnownAccount:
    """An account registered at a site (`Get-CMAccount` finds it there)."""

    name: str = attrs.field(converter=_account_name)
    site_code: str = attrs.field(converter=_account_site_code)


def _sites(value: Iterable[Site]) -> tuple[Site, ...]:
    return tuple(value)


def _servers(value: Iterable[SiteSystemServer]) -> tuple[SiteSystemServer, ...]:
    return tuple(value)


def _accounts(value: Iterable[KnownAccount]) -> frozenset[KnownAccount]:
    return frozenset(value)


@attrs.frozen
class SiteState:
    """Everything the planner needs about a hierarchy, as read at one moment."""

    sites: tuple[Site, ...] = attrs.field(factory=tuple, converter=_sites)
    servers: tuple[SiteSystemServer, ...] = attrs.field(factory=tuple, converter=_servers)
    #: Accounts registered per site (`Get-CMAccount`); names compare case-insensitively.
    accounts: frozenset[KnownAccount] = attrs.field(factory=frozenset, converter=_accounts)

    #: Lookup tables built once (a bulk change asks for servers thousands of times).
    _by_name: dict[str, SiteSystemServer] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _account_keys: frozenset[tuple[str, str]] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        by_name: dict[str, SiteSystemServer] = {}
        for server in self.servers:
            if server.key in by_name:
                raise ValidationError(
                    "servers", server.name, "appears twice; a server has one proxy (R1)"
                )
            by_name[server.key] = server
        object.__setattr__(self, "_by_name", by_name)
        keys = frozenset((a.name.lower(), a.site_code) for a in self.accounts)
        object.__setattr__(self, "_account_keys", keys)

    def site(self, code: str) -> Site | None:
        return next((s for s in self.sites if s.code == code.upper()), None)

    def server(self, name: str) -> SiteSystemServer | None:
        return self._by_name.get(name.lower().removeprefix("\\\\"))

    def has_account(self, name: str, site_code: str) -> bool:
        return (name.lower(), site_code.upper()) in self._account_keys

    def with_server(self, server: SiteSystemServer) -> SiteState:
        """A copy with `server` replaced (or added)."""
        others = [s for s in self.servers if s.key != server.key]
        return attrs.evolve(self, servers=(*others, server))

    def __repr__(self) -> str:
        """Short: a hierarchy of hundreds of servers is a table (`_repr_html_`), not a repr."""
        from cmproxy.render import state_summary  # noqa: PLC0415 - render imports this module

        return f"<SiteState: {state_summary(self)}>"

    def _repr_html_(self) -> str:
        """The hierarchy as a table in Jupyter: one row per server."""
        from cmproxy.render import state_html  # noqa: PLC0415 - render imports this module

        return state_html(self)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per server: site, roles, proxy, account, SUP options (`pandas` extra)."""
        from cmproxy.render import STATE_COLUMNS, dataframe, state_rows  # noqa: PLC0415

        return dataframe(state_rows(self), STATE_COLUMNS)
