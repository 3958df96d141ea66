"""Every connection option, declared once: its `ConnectionInfo` field, type, help, environment
variable, default, CLI flag and Ansible option name.

The CLI's connection flags are generated from `CONNECTION_OPTIONS` (`cmproxy.cli.options`);
the Ansible collection's argument spec and doc fragment are checked against it
(tests/cli/test_connection_options.py), as is `ConnectionInfo` itself (each field, its
default, its `CMPROXY_*` variable and its Ansible name). A new connection setting is one
record here plus its `ConnectionInfo` field.
"""

from __future__ import annotations

from typing import Literal

import attrs

from cmproxy.transport_names import DEFAULT_TRANSPORT, TRANSPORT_NAMES, TRANSPORTS

__all__ = ["CONNECTION_OPTIONS", "ConnectionOption", "OptionType", "by_field"]

#: Ansible's vocabulary for an option's type (the CLI maps it to a Python type).
OptionType = Literal["str", "int", "float", "bool", "path"]


@attrs.frozen(kw_only=True)
class ConnectionOption:
    """One connection setting as every face of cmproxy offers it."""

    #: The `ConnectionInfo` field it sets.
    field: str
    type: OptionType
    help: str
    #: What the user gets when the option is not set (as the docs say it).
    default: str = ""
    #: The CLI flag; a bool option is a `--flag/--no-flag` pair.
    flag: str = attrs.field()
    #: A short CLI flag, if any.
    short: str | None = None
    #: The Ansible option name (psrp connection plugin names where it has one) and aliases.
    ansible: str = attrs.field()
    ansible_aliases: tuple[str, ...] = ()
    #: The Ansible type when it differs from `type` (cert_validation takes validate/ignore).
    ansible_type: OptionType | None = None
    choices: tuple[str, ...] = ()
    #: Whether Ansible's argument spec and doc fragment list `choices` (False: the module
    #: passes the value to `ConnectionInfo`, which refuses a bad one naming the choices, and
    #: the doc fragment names them in the description, so a new choice is not a new spec).
    ansible_choices: bool = True
    secret: bool = False

    @flag.default
    def _flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @ansible.default
    def _ansible(self) -> str:
        return self.field

    @property
    def env(self) -> str:
        """The environment variable `ConnectionInfo.from_env` reads."""
        return "CMPROXY_" + self.field.upper()


CONNECTION_OPTIONS: tuple[ConnectionOption, ...] = (
    ConnectionOption(
        field="server",
        type="str",
        help="SMS Provider host name (the WinRM endpoint)",
        default="(required)",
        ansible="remote_addr",
        ansible_aliases=("cm_server",),
    ),
    ConnectionOption(
        field="username",
        type="str",
        help="The user to authenticate as, DOMAIN\\user",
        short="-u",
        ansible="remote_user",
        ansible_aliases=("cm_user", "cm_username"),
    ),
    ConnectionOption(
        field="password",
        type="str",
        help="Prefer CMPROXY_PASSWORD or the prompt: a flag is visible to other users",
        default="asked at the prompt when stdin is a terminal",
        ansible="remote_password",
        ansible_aliases=("cm_password",),
        secret=True,
    ),
    ConnectionOption(
        field="port",
        type="int",
        help="WinRM port",
        default="5986 for https, 5985 for http",
        ansible_aliases=("cm_port",),
    ),
    ConnectionOption(
        field="scheme",
        type="str",
        help="https or http",
        default="https",
        ansible="protocol",
        choices=("http", "https"),
    ),
    ConnectionOption(
        field="path", type="str", help="URI path of the WinRM endpoint", default="wsman"
    ),
    ConnectionOption(
        field="auth",
        type="str",
        help="Authentication protocol",
        default="negotiate",
        choices=("negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate"),
    ),
    ConnectionOption(
        field="cert_validation",
        type="bool",
        ansible_type="str",
        help="Verify the server certificate (turning it off is unsafe; prefer --ca-cert)",
        default="true",
    ),
    ConnectionOption(
        field="ca_cert",
        type="path",
        help="PEM bundle of the CA that signed the server certificate",
        default="the system trust store",
        ansible_aliases=("cert_trust_path",),
    ),
    ConnectionOption(
        field="message_encryption",
        type="str",
        help="WinRM message encryption (auto: over http when the auth can)",
        default="auto",
        choices=("auto", "always", "never"),
    ),
    ConnectionOption(
        field="connection_timeout", type="float", help="Seconds to wait to connect", default="30"
    ),
    ConnectionOption(
        field="read_timeout",
        type="float",
        help="Seconds to wait for an answer (longer than the operation timeout)",
        default="60",
    ),
    ConnectionOption(
        field="operation_timeout", type="float", help="WSMan operation timeout", default="20"
    ),
    ConnectionOption(
        field="proxy",
        type="str",
        help="HTTP proxy URL to reach the WinRM endpoint (not a site system proxy)",
    ),
    ConnectionOption(
        field="ignore_proxy",
        type="bool",
        help="Ignore HTTP(S)_PROXY variables and connect directly",
        default="false",
    ),
    ConnectionOption(
        field="certificate_pem", type="path", help="Client certificate (PEM) for --auth certificate"
    ),
    ConnectionOption(
        field="certificate_key_pem", type="path", help="Private key (PEM) of the client certificate"
    ),
    ConnectionOption(
        field="negotiate_hostname_override",
        type="str",
        help="Host name in the Kerberos SPN when the server is an address or alias",
        default="the server's own name",
    ),
    ConnectionOption(
        field="configuration_name",
        type="str",
        help="PowerShell session configuration",
        default="Microsoft.PowerShell",
    ),
    ConnectionOption(
        field="allow_basic_over_http",
        type="bool",
        help="Allow Basic auth over plain http (sends the password unencrypted)",
        default="false",
    ),
    ConnectionOption(
        field="site_code",
        type="str",
        help="Site code of the provider's site (its CMSite drive)",
        default="discovered by the session bootstrap",
    ),
    ConnectionOption(
        field="transport",
        type="str",
        help=" or ".join(f"{name} ({entry.summary})" for name, entry in TRANSPORTS.items()),
        default=DEFAULT_TRANSPORT,
        choices=TRANSPORT_NAMES,
        # The SDK checks the name (`ConnectionInfo`): the collection does not repeat the list.
        ansible_choices=False,
    ),
    ConnectionOption(
        field="module_path",
        type="str",
        help="Full path of ConfigurationManager.psd1 on the SMS Provider",
        default="found by the bootstrap",
    ),
    ConnectionOption(
        field="provider_machine_name",
        type="str",
        help="The SMS Provider's FQDN for the site drive",
        default="the server's own name",
    ),
    ConnectionOption(
        field="max_pools",
        type="int",
        help="Runspace pools (WinRM shells) one session opens at most",
        default="12",
    ),
    ConnectionOption(
        field="account_max_shells",
        type="int",
        help="Shells all cmproxy processes of this account hold at most on the endpoint (0 = "
        "no cap)",
        default="20",
    ),
    ConnectionOption(
        field="quota_wait",
        type="float",
        help="Seconds to wait for a free shell when the WinRM quota is full",
        default="120",
    ),
)


def by_field(field: str) -> ConnectionOption | None:
    """The option that sets `ConnectionInfo.<field>` (None for a field of no option)."""
    return next((o for o in CONNECTION_OPTIONS if o.field == field), None)
