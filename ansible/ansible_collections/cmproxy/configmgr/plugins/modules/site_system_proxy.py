# Copyright (c) cmproxy contributors
# MIT License (see LICENSE in the collection root; SPDX-License-Identifier: MIT)

"""Ansible module: the proxy of ConfigMgr site system servers (a thin face over cmproxy)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: site_system_proxy
short_description: Set or remove the proxy of ConfigMgr site system servers
version_added: 0.1.0
description:
  - Sets the proxy server of one or more ConfigMgr (SCCM/MECM) site system servers, or removes
    it (O(state=absent)), through the SMS Provider, like the B(Proxy) tab of the site system's
    properties (C(Set-CMSiteSystemServer)).
  - A site system server has B(one) proxy, shared by all its roles (rule R1). Every role on the
    server that reaches the Internet uses it (the software update point only for its options,
    see M(cmproxy.configmgr.software_update_point_proxy)).
  - B(A new proxy replaces the old one whole) (rule R2). Options you leave out are not kept -
    O(proxy_port) falls back to 80 and, without O(proxy_account), the server's System account
    connects to the proxy (R3). The diff and the returned plan show every field that changes.
  - All servers of one task are read, planned and changed in B(one session and one
    transaction) - nothing is written unless the whole change is allowed, and if a write fails
    every server already changed is put back.
  - A proxy asked for a cloud distribution point is set on the primary site server that
    manages it (R5); that server then appears in RV(servers) too.
  - Idempotent; supports check mode (plan only, nothing written) and diff.
author:
  - cmproxy contributors (!UNKNOWN)
extends_documentation_fragment:
  - cmproxy.configmgr.connection
  - cmproxy.configmgr.connection.journal
options:
  servers:
    description:
      - The site system servers (FQDN or host name as ConfigMgr knows them) to configure.
      - One name or a list; all are changed together in one transaction.
    type: list
    elements: str
    required: true
    aliases: [server]
  state:
    description:
      - V(present) sets the proxy given by O(proxy_server), O(proxy_port) and O(proxy_account).
      - V(absent) removes it (the roles connect directly).
    type: str
    choices: [present, absent]
    default: present
  proxy_server:
    description:
      - The proxy's host name, FQDN or IP address (no URL, no port). Required with
        O(state=present).
    type: str
  proxy_port:
    description:
      - The proxy's port. The default is the product's, 80, and applies whenever the option is
        left out, even if the server had another port before (R2).
    type: int
    default: 80
  proxy_account:
    description:
      - The ConfigMgr account (C(DOMAIN\user)) that authenticates to the proxy (the site system
        proxy server account).
      - Left out, the System account of the server connects (R3); an account set before is
        dropped (R2).
      - If the account does not exist at the server's site it is created (C(New-CMAccount)),
        which needs O(proxy_password).
    type: str
  proxy_password:
    description:
      - The password of O(proxy_account), used only to create that account.
      - ConfigMgr cannot give a password back, so it is never compared and never changes
        C(changed) on its own. Never logged, returned or shown in a diff.
    type: str
  update_password:
    description:
      - V(on_create) uses O(proxy_password) only when the account must be created; an account
        that exists keeps its password.
      - V(always) asks for the password to be set even when the account exists. cmproxy cannot
        change the password of an existing ConfigMgr account, so the task B(fails) (before
        anything is written) when the account already exists at a server's site. Change it in
        the console (Administration > Security > Accounts) instead.
    type: str
    choices: [always, on_create]
    default: on_create
  sup_flags_on_proxy_removal:
    description:
      - What to do when O(state=absent) removes the proxy of a server whose software update
        point still has its proxy options on (R11).
      - V(refuse) fails the task; V(turn_off) turns the SUP options off first, in the same
        transaction.
    type: str
    choices: [refuse, turn_off]
    default: refuse
attributes:
  check_mode:
    support: full
    description: Plans the change and reports it; nothing is written on the site.
  diff_mode:
    support: full
    description: Before and after per server and field; passwords are masked.
seealso:
  - module: cmproxy.configmgr.software_update_point_proxy
  - module: cmproxy.configmgr.site_system_proxy_info
"""

EXAMPLES = r"""
- name: Give two distribution points of PS1 the DMZ proxy
  cmproxy.configmgr.site_system_proxy:
    remote_addr: cm-ps1.contoso.com
    remote_user: CONTOSO\cmadmin
    remote_password: "{{ vault_cm_password }}"
    site_code: PS1
    servers:
      - cm-ps1-dp01.contoso.com
      - cm-ps1-dp02.contoso.com
    proxy_server: proxy-dmz.contoso.com
    proxy_port: 3128
  delegate_to: localhost

- name: Connection options once for every module of the collection
  delegate_to: localhost
  module_defaults:
    group/cmproxy.configmgr.configmgr:
      remote_addr: cm-ps1.contoso.com
      remote_user: CONTOSO\cmadmin
      remote_password: "{{ vault_cm_password }}"
      ca_cert: /etc/pki/contoso-ca.pem
  block:
    - name: Proxy with an authenticating account (created if missing)
      cmproxy.configmgr.site_system_proxy:
        server: cm-ps1-sup01.contoso.com
        proxy_server: proxy.contoso.com
        proxy_port: 8080
        proxy_account: CONTOSO\svc-proxy
        proxy_password: "{{ vault_proxy_password }}"
        update_password: on_create

    - name: Remove the proxy of a server, turning its SUP proxy options off first
      cmproxy.configmgr.site_system_proxy:
        server: cm-ps1-sup02.contoso.com
        state: absent
        sup_flags_on_proxy_removal: turn_off
"""

RETURN = r"""
servers:
  description:
    - One entry per server, requested or changed (a cloud DP's managing site server, R5).
  returned: success or when a change failed
  type: list
  elements: dict
  contains:
    server:
      description: The server name (lower case).
      type: str
      sample: cm-ps1-dp01.contoso.com
    site_code:
      description: Its site.
      type: str
      sample: PS1
    outcome:
      description:
        - V(changed), V(unchanged), V(would change) (check mode), V(rolled back) or V(failed).
      type: str
      sample: changed
    changed:
      description: Whether the plan changes this server.
      type: bool
    before:
      description:
        - The server's proxy (C(enabled), C(server), C(port), C(account)) and SUP options
          (C(use_proxy), C(use_proxy_for_adr); null when it hosts no software update point)
          before the task. Never a password.
      type: dict
      sample:
        proxy: {enabled: false, server: null, port: 80, account: null}
        sup: null
    after:
      description: The same after the task (in check mode, what it would be).
      type: dict
      sample:
        proxy: {enabled: true, server: proxy.contoso.com, port: 8080, account: null}
        sup: null
    fields:
      description: Each field that changes, with a note where a default steps in (R2).
      type: list
      elements: dict
      sample:
        - {field: port, before: 3128, after: 80,
           note: "R2: the new proxy replaces the old one whole; the port falls back to 80"}
    reason:
      description: Why a server was not changed or was rolled back.
      type: str
accounts_created:
  description: ConfigMgr accounts created (or, in check mode, to be created) for the proxy.
  returned: success
  type: list
  elements: dict
  sample: [{name: CONTOSO\svc-proxy, site_code: PS1}]
plan:
  description:
    - The ordered changes (cmproxy C(Plan.to_dict())), each with its cmdlet invocation.
      Passwords appear as C(********).
  returned: success
  type: list
  elements: dict
plan_text:
  description: The plan as text, for people.
  returned: success
  type: str
  sample: "1. set server proxy on cm-ps1-dp01.contoso.com [PS1] ..."
plan_warnings:
  description: Rule warnings (also shown as task warnings).
  returned: success
  type: list
  elements: dict
transaction_id:
  description: The journal id of the transaction; null when nothing was written.
  returned: success
  type: str
journal:
  description: The journal file used; null in check mode.
  returned: success
  type: str
error:
  description:
    - The SDK's structured error in this module's terms. C(rule) is the proxy rule (R1-R14)
      refused; C(field) the option to change and C(value) its value; C(server) the server
      it is about; C(sdk_field) the SDK's own field path. Never a password.
  returned: failure
  type: dict
  sample:
    type: RuleViolation
    rule: R11
    field: sup_flags_on_proxy_removal
    value: refuse
    server: cm-ps1-sup01.contoso.com
    sdk_field: proxies
    message: "[R11] state=absent for cm-ps1-sup01.contoso.com: its software update point ..."
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cmproxy.configmgr.plugins.module_utils.common import (
    JOURNAL_OPTIONS,
    Explained,
    OptionNames,
    cmproxy,
    connection_argument_spec,
    fail_with,
    require_cmproxy,
    run_desired,
    sup_options_on,
)

#: ProxySettings fields (and a role's refusal of the whole proxy) as this module's options.
PROXY_FIELDS = {
    "proxy": "proxy_server",
    "proxy.server": "proxy_server",
    "proxy.port": "proxy_port",
    "proxy.account": "proxy_account",
    "proxy.password": "proxy_password",
    "password": "proxy_password",
    "proxy.enabled": "state",
}
#: SDK names quoted in the reasons of those errors.
PROXY_WORDS = {"'port'": "proxy_port", "'account'": "proxy_account"}


def argument_spec() -> dict[str, dict[str, Any]]:
    spec = connection_argument_spec()
    spec.update(JOURNAL_OPTIONS)
    spec.update(
        servers={"type": "list", "elements": "str", "required": True, "aliases": ["server"]},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        proxy_server={"type": "str"},
        proxy_port={"type": "int", "default": 80},
        proxy_account={"type": "str"},
        proxy_password={"type": "str", "no_log": True},
        update_password={
            "type": "str",
            "choices": ["always", "on_create"],
            "default": "on_create",
            "no_log": False,
        },
        sup_flags_on_proxy_removal={
            "type": "str",
            "choices": ["refuse", "turn_off"],
            "default": "refuse",
        },
    )
    return spec


def option_names(servers: list[str], params: dict[str, Any]) -> OptionNames:
    """The SDK's refusals in this module's options (its requests are built from `servers`)."""

    def sup_still_on(error: Any, server: str | None) -> Explained:
        # R11: state=absent under a software update point that still uses the proxy.
        name = str(error.value) if server is None else server
        on = " and ".join(f"{o}=true" for o in sup_options_on(error.reason)) or "on"
        return (
            "sup_flags_on_proxy_removal",
            params.get("sup_flags_on_proxy_removal"),
            name,
            f"state=absent for {name}: its software update point still uses the server "
            f"proxy ({on}). With sup_flags_on_proxy_removal=turn_off this task turns them "
            "off first (in the same transaction), or turn them off in an earlier task with "
            "cmproxy.configmgr.software_update_point_proxy (use_proxy=false, "
            "use_proxy_for_adr=false). Nothing was written.",
        )

    return OptionNames(
        servers, PROXY_FIELDS, PROXY_WORDS, explain={("R11", "proxies"): sup_still_on}
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ["proxy_server"])],
        required_by={"proxy_password": "proxy_account"},
        supports_check_mode=True,
    )
    require_cmproxy(module)
    p = module.params
    servers = [s for s in p["servers"] if s]
    if not servers:
        module.fail_json(msg="servers must name at least one site system server")
    if p["state"] == "absent":
        given = [k for k in ("proxy_server", "proxy_account", "proxy_password") if p.get(k)]
        if given:
            module.fail_json(msg=f"state=absent removes the proxy; do not give {', '.join(given)}")

    names = option_names(servers, p)
    try:
        if p["state"] == "present":
            proxy = cmproxy.ProxySettings(
                server=p["proxy_server"],
                port=p["proxy_port"],
                account=p["proxy_account"] or None,
                password=p["proxy_password"] or None,
            )
        else:
            proxy = cmproxy.ProxySettings.disabled()
        desired = cmproxy.DesiredState(
            proxies=[cmproxy.ProxyRequest(name, proxy) for name in servers]
        )
        options = cmproxy.PlanOptions(sup_flags_on_proxy_removal=p["sup_flags_on_proxy_removal"])
    except cmproxy.CMProxyError as error:
        fail_with(module, error, names)
        return

    def check_password_update(state: Any) -> None:
        """update_password=always: refuse, honestly, to 'update' an existing account."""
        account = p["proxy_account"]
        mode = p["update_password"]
        if mode != "always" or not account or not p["proxy_password"]:
            return
        for name in servers:
            server = state.server(name)
            if server is not None and state.has_account(account, server.site_code):
                module.fail_json(
                    msg=(
                        f"update_password=always: account {account} already exists at site "
                        f"{server.site_code}, and cmproxy cannot change the password of an "
                        "existing ConfigMgr account (nothing was written). Use "
                        "update_password=on_create, or change the password in the console "
                        "(Administration > Security > Accounts)."
                    ),
                    error={
                        "type": "UnsupportedOperation",
                        "field": "update_password",
                        "value": "always",
                        "rule": None,
                    },
                )

    run_desired(
        module,
        desired,
        servers,
        options=options,
        check_state=check_password_update,
        names=names,
    )


if __name__ == "__main__":
    main()
