"""Desired state from YAML: a default proxy per site, per-server overrides, SUP options, accounts.

Errors point at the line and column of the file (`DesiredStateError.line`). Passwords are
never in the file: an account names an environment variable (`password_env`) or asks for a
prompt (`prompt: true`), answered by the caller's `prompt` function.

    version: 1
    options:
      sup_flags_on_proxy_removal: refuse     # or turn_off (R11)
    sites:
      PS1:
        proxy: {server: proxy.contoso.com, port: 3128, account: CONTOSO\\svc-proxy}
        sup: {use_proxy: true, use_proxy_for_adr: true}
    servers:
      cm-dmz01.contoso.com:
        proxy: {server: dmz-proxy.contoso.com, port: 8080}
      cm-lab01.contoso.com:
        proxy: none                          # no proxy
    accounts:
      - name: CONTOSO\\svc-proxy
        password_env: CMPROXY_SVC_PROXY_PASSWORD
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import yaml

from cmproxy._exceptions import RuleViolation, ValidationError
from cmproxy.model import Account, ProxySettings, SiteState, validate_site_code
from cmproxy.plan import DesiredState, PlanOptions, ProxyRequest, SupFlagsRequest
from cmproxy.render import account_text, dataframe, html_table, onoff, options_text, proxy_text
from cmproxy.roles import CloudDistributionPoint
from cmproxy.settings import SUP_OPTIONS

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DesiredSpec",
    "DesiredStateError",
    "SiteDefaults",
    "examples_dir",
    "load_desired",
    "parse_desired",
]

Prompt = Callable[[str], str]

SPEC_COLUMNS = ("applies to", "proxy", "account", "SUP sync", "SUP ADR")


class DesiredStateError(ValidationError):
    """A desired-state file is wrong at `line`:`column` (1-based)."""

    def __init__(  # noqa: PLR0913 - an error carries each of its fields, named
        self, source: str, line: int, column: int, *, path: str, value: Any, reason: str
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.path = path
        super().__init__(path, value, reason)
        self.args = (f"{source}:{line}:{column}: {path}: {reason} (got {value!r})",)

    def __str__(self) -> str:
        return str(self.args[0])


@attrs.frozen
class SiteDefaults:
    """What every server of a site should have unless a server override says otherwise."""

    proxy: ProxySettings | None = None
    use_proxy: bool | None = None
    use_proxy_for_adr: bool | None = None


@attrs.frozen
class DesiredSpec:
    """A parsed desired-state file, before it meets a site (`resolve`)."""

    sites: Mapping[str, SiteDefaults] = attrs.field(factory=dict)
    servers: Mapping[str, SiteDefaults] = attrs.field(factory=dict)
    accounts: tuple[Account, ...] = ()
    options: PlanOptions = attrs.field(factory=PlanOptions)

    def __repr__(self) -> str:
        """Short; the table is `_repr_html_` (and no password is in either)."""
        return (
            f"<DesiredSpec: {len(self.sites)} site default(s), {len(self.servers)} server "
            f"override(s), {len(self.accounts)} account(s); {options_text(self.options)}>"
        )

    def rows(self) -> list[dict[str, object]]:
        """One row per site default and per server override, as the file writes them."""
        scoped = [(f"site {c}", d) for c, d in self.sites.items()]
        scoped += [(f"server {n}", d) for n, d in self.servers.items()]
        return [
            {
                "applies to": scope,
                "proxy": proxy_text(d.proxy),
                "account": account_text(d.proxy),
                "SUP sync": onoff(d.use_proxy),
                "SUP ADR": onoff(d.use_proxy_for_adr),
            }
            for scope, d in scoped
        ]

    def _repr_html_(self) -> str:
        table = html_table(
            self.rows(), SPEC_COLUMNS, "cmproxy-desired", caption=options_text(self.options)
        )
        accounts = ", ".join(
            f"{a.name} ({'password given' if a.password else 'no password'})" for a in self.accounts
        )
        return table + (f"<p>accounts: {html.escape(accounts)}</p>" if accounts else "")

    def to_dataframe(self) -> pd.DataFrame:
        """One row per site default and server override (`pandas` extra)."""
        return dataframe(self.rows(), SPEC_COLUMNS)

    def resolve(self, state: SiteState) -> DesiredState:
        """Expand site defaults over the servers `state` holds; overrides win.

        Cloud distribution points are skipped by site defaults: their proxy is the one of the
        primary site server that manages them (R5).
        """
        proxies: dict[str, ProxyRequest] = {}
        flags: dict[str, SupFlagsRequest] = {}

        def apply(server_name: str, spec: SiteDefaults, origin: str) -> None:
            server = state.server(server_name)
            if server is None:
                raise ValidationError(
                    f"servers.{server_name}", server_name, "is not a site system server of the site"
                )
            if spec.proxy is not None:
                proxies[server.key] = ProxyRequest(server.name, spec.proxy, role=origin)
            if SUP_OPTIONS.carried(server) and (
                spec.use_proxy is not None or spec.use_proxy_for_adr is not None
            ):
                flags[server.key] = SupFlagsRequest(
                    server.name, spec.use_proxy, spec.use_proxy_for_adr
                )

        for code, defaults in self.sites.items():
            if state.site(code) is None:
                raise ValidationError(f"sites.{code}", code, "is not a site in the state read")
            for server in state.servers:
                if server.site_code == code and not server.has_role(CloudDistributionPoint):
                    apply(server.name, defaults, f"site {code} default")
        # Server names compare case-insensitively (the site's key): two overrides that name
        # one server in different letter case are one server's request, so different proxies
        # for it break R1 as surely as two roles asking for two proxies do.
        overridden: dict[str, tuple[str, SiteDefaults]] = {}
        for name, override in self.servers.items():
            found = state.server(name)
            if found is not None and found.key in overridden:
                _same_override(overridden[found.key], (name, override))
            if found is not None:
                overridden[found.key] = (name, override)
            apply(name, override, f"override for {name}")
        return DesiredState(
            proxies=tuple(proxies.values()),
            sup_flags=tuple(flags.values()),
            accounts=self.accounts,
            options=self.options,
        )


def _same_override(first: tuple[str, SiteDefaults], second: tuple[str, SiteDefaults]) -> None:
    """Two overrides for one server (names differing only in letter case) must agree."""
    (name_a, a), (name_b, b) = first, second
    if a.proxy is not None and b.proxy is not None and not a.proxy.same_as(b.proxy):
        raise RuleViolation(
            "R1",
            f"servers.{name_b}",
            name_b,
            f"is the same server as servers.{name_a} (server names compare case-insensitively), "
            f"and two different proxies are wanted for it: {a.proxy.describe()} and "
            f"{b.proxy.describe()}. A site system server has one proxy.",
        )
    for field in ("use_proxy", "use_proxy_for_adr"):
        one, other = getattr(a, field), getattr(b, field)
        if one is not None and other is not None and one != other:
            raise ValidationError(
                f"servers.{name_b}.sup.{field}",
                other,
                f"is the same server as servers.{name_a} (server names compare "
                f"case-insensitively), which asks for {field}={one}",
            )


def examples_dir() -> Path:
    """Where the example desired-state files live: `cmproxy/examples/` in a wheel (the build
    puts the repository's `examples/` there), the repository's `examples/` in a checkout."""
    packaged = Path(__file__).resolve().parent / "examples"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "examples"


def load_desired(path: str | os.PathLike[str], prompt: Prompt | None = None) -> DesiredSpec:
    """Read and validate a desired-state YAML file."""
    p = Path(path)
    return parse_desired(p.read_text(encoding="utf-8"), source=str(p), prompt=prompt)


def parse_desired(
    text: str, source: str = "<desired>", prompt: Prompt | None = None
) -> DesiredSpec:
    """Validate desired-state YAML text; every error names its line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DesiredStateError(
            source, line, col, path="<file>", value=None, reason=str(error.problem)
        ) from None
    return _Parser(source, prompt).document(root)


class _Parser:
    def __init__(self, source: str, prompt: Prompt | None) -> None:
        self.source = source
        self.prompt = prompt
        self.loader = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, path: str, value: Any, reason: str) -> DesiredStateError:
        mark = node.start_mark if node is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return DesiredStateError(self.source, line, col, path=path, value=value, reason=reason)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return None
        return self.loader.construct_object(node, deep=True)

    def mapping(
        self, node: yaml.Node | None, path: str, allowed: set[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path, self.scalar(node) if node else None, "must be a mapping")
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = str(self.scalar(key_node))
            if allowed and key not in allowed:
                hint = ""
                if key == "password":
                    hint = "; passwords never go in the file: use password_env or prompt: true"
                raise self.fail(
                    key_node,
                    f"{path}.{key}",
                    key,
                    f"unknown key (expected one of: {', '.join(sorted(allowed))}){hint}",
                )
            if key in result:
                raise self.fail(key_node, f"{path}.{key}", key, "appears twice")
            result[key] = (key_node, value_node)
        return result

    def document(self, root: yaml.Node | None) -> DesiredSpec:
        if root is None:
            raise self.fail(None, "<file>", None, "is empty")
        top = self.mapping(root, "$", {"version", "options", "sites", "servers", "accounts"})
        if "version" in top:
            key_node, value_node = top["version"]
            if self.scalar(value_node) != 1:
                raise self.fail(value_node, "version", self.scalar(value_node), "must be 1")
        options = self.options(top["options"][1]) if "options" in top else PlanOptions()
        sites: dict[str, SiteDefaults] = {}
        if "sites" in top:
            for raw, (key_node, value_node) in self.mapping(
                top["sites"][1], "sites", set()
            ).items():
                try:
                    code = validate_site_code(raw, f"sites.{raw}")
                except ValidationError as error:
                    raise self.fail(key_node, f"sites.{raw}", raw, error.reason) from None
                sites[code] = self.defaults(value_node, f"sites.{code}")
        servers: dict[str, SiteDefaults] = {}
        if "servers" in top:
            for name, (_k, value_node) in self.mapping(top["servers"][1], "servers", set()).items():
                servers[name] = self.defaults(value_node, f"servers.{name}")
        accounts: list[Account] = []
        if "accounts" in top:
            node = top["accounts"][1]
            if not isinstance(node, yaml.SequenceNode):
                raise self.fail(node, "accounts", self.scalar(node), "must be a list")
            accounts = [self.account(item, f"accounts[{i}]") for i, item in enumerate(node.value)]
        return DesiredSpec(sites, servers, tuple(accounts), options)

    def options(self, node: yaml.Node) -> PlanOptions:
        opts = self.mapping(node, "options", {"sup_flags_on_proxy_removal"})
        if "sup_flags_on_proxy_removal" not in opts:
            return PlanOptions()
        node = opts["sup_flags_on_proxy_removal"][1]
        value = self.scalar(node)
        if value not in ("refuse", "turn_off"):
            raise self.fail(
                node,
                "options.sup_flags_on_proxy_removal",
                value,
                "must be 'refuse' or 'turn_off' (R11)",
            )
        return PlanOptions(sup_flags_on_proxy_removal=value)

    def defaults(self, node: yaml.Node, path: str) -> SiteDefaults:
        fields = self.mapping(node, path, {"proxy", "sup"})
        proxy = self.proxy(fields["proxy"][1], f"{path}.proxy") if "proxy" in fields else None
        use_proxy = use_adr = None
        if "sup" in fields:
            sup = self.mapping(fields["sup"][1], f"{path}.sup", {"use_proxy", "use_proxy_for_adr"})
            use_proxy = self.boolean(sup.get("use_proxy"), f"{path}.sup.use_proxy")
            use_adr = self.boolean(sup.get("use_proxy_for_adr"), f"{path}.sup.use_proxy_for_adr")
        return SiteDefaults(proxy, use_proxy, use_adr)

    def boolean(self, pair: tuple[yaml.Node, yaml.Node] | None, path: str) -> bool | None:
        if pair is None:
            return None
        value = self.scalar(pair[1])
        if not isinstance(value, bool):
            raise self.fail(pair[1], path, value, "must be true or false")
        return value

    def proxy(self, node: yaml.Node, path: str) -> ProxySettings:
        if isinstance(node, yaml.ScalarNode) and self.scalar(node) in (None, False, "none"):
            return ProxySettings.disabled()
        fields = self.mapping(node, path, {"server", "port", "account"})
        values = {k: self.scalar(v) for k, (_key, v) in fields.items()}
        try:
            return ProxySettings(**values)
        except ValidationError as error:
            name = error.field.rsplit(".", 1)[-1]
            where = fields[name][1] if name in fields else node
            raise self.fail(where, f"{path}.{name}", error.value, error.reason) from None

    def account(self, node: yaml.Node, path: str) -> Account:
        fields = self.mapping(node, path, {"name", "password_env", "prompt"})
        if "name" not in fields:
            raise self.fail(node, f"{path}.name", None, "is required")
        name = self.scalar(fields["name"][1])
        password: str | None = None
        if "password_env" in fields:
            var_node = fields["password_env"][1]
            var = str(self.scalar(var_node))
            password = os.environ.get(var)
            if not password:
                raise self.fail(
                    var_node, f"{path}.password_env", var, "environment variable is not set"
                )
        elif "prompt" in fields and self.scalar(fields["prompt"][1]) is True:
            if self.prompt is None:
                raise self.fail(
                    fields["prompt"][1],
                    f"{path}.prompt",
                    True,
                    "no prompt is available here; use password_env",
                )
            password = self.prompt(f"Password for {name}: ")
        try:
            return Account(name, password=password)
        except ValidationError as error:
            raise self.fail(fields["name"][1], f"{path}.name", name, error.reason) from None
