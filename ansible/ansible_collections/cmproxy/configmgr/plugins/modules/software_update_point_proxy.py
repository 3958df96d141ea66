# Copyright (c) cmproxy contributors
# MIT License (see LICENSE in the collection root; SPDX-License-Identifier: MIT)

"""Ansible module: a software update point's proxy options (a thin face over cmproxy)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: software_update_point_proxy
short_description: Turn a ConfigMgr software update point's proxy options on or off
version_added: 0.1.0
description:
  - Sets the two proxy options of software update points (rule R9), as on the B(General) tab
    of the Software Update Point Component Properties (R10) or with
    C(Set-CMSoftwareUpdatePoint) - B(Use a proxy server when synchronizing software updates)
    (O(use_proxy)) and B(Use a proxy server when downloading content by using automatic
    deployment rules) (O(use_proxy_for_adr)).
  - The options use the proxy of the site system server that hosts the software update point
    (set it with M(cmproxy.configmgr.site_system_proxy)). Turning an option on for a server
    without a proxy is refused before anything is written (R11) - the product would accept it
    and WSUS would fail later.
  - An option that will have no effect is written as asked and reported as a task warning
    (R9) - the ADR option at a secondary site, or the sync option on a SUP that synchronises
    from an upstream server.
  - All servers of one task change in one session and one transaction. Idempotent; supports
    check mode and diff.
author:
  - cmproxy contributors (!UNKNOWN)
extends_documentation_fragment:
  - cmproxy.configmgr.connection
  - cmproxy.configmgr.connection.journal
options:
  servers:
    description:
      - The site system servers hosting the software update points (one name or a list).
    type: list
    elements: str
    required: true
    aliases: [server]
  use_proxy:
    description:
      - Use the server's proxy when synchronizing software updates. Left out, unchanged.
    type: bool
  use_proxy_for_adr:
    description:
      - Use the server's proxy when automatic deployment rules download content. Left out,
        unchanged.
    type: bool
attributes:
  check_mode:
    support: full
    description: Plans the change and reports it; nothing is written on the site.
  diff_mode:
    support: full
    description: Before and after of both options per server.
seealso:
  - module: cmproxy.configmgr.site_system_proxy
  - module: cmproxy.configmgr.site_system_proxy_info
"""

EXAMPLES = r"""
- name: Synchronise through the proxy; ADR downloads too
  cmproxy.configmgr.software_update_point_proxy:
    server: cm-ps1-sup01.contoso.com
    use_proxy: true
    use_proxy_for_adr: true
  delegate_to: localhost

- name: Proxy first, then the SUP options (two tasks, in this order - R11)
  block:
    - cmproxy.configmgr.site_system_proxy:
        servers: [cm-ps2-sup01.contoso.com, cm-ps2-sup02.contoso.com]
        proxy_server: proxy.contoso.com
        proxy_port: 8080
    - cmproxy.configmgr.software_update_point_proxy:
        servers: [cm-ps2-sup01.contoso.com, cm-ps2-sup02.contoso.com]
        use_proxy: true
  delegate_to: localhost
"""

RETURN = r"""
servers:
  description: One entry per server, as in M(cmproxy.configmgr.site_system_proxy).
  returned: success or when a change failed
  type: list
  elements: dict
  sample:
    - server: cm-ps1-sup01.contoso.com
      site_code: PS1
      outcome: changed
      changed: true
      before:
        proxy: {enabled: true, server: proxy.contoso.com, port: 8080, account: null}
        sup: {use_proxy: true, use_proxy_for_adr: false}
      after:
        proxy: {enabled: true, server: proxy.contoso.com, port: 8080, account: null}
        sup: {use_proxy: true, use_proxy_for_adr: true}
      fields: [{field: use_proxy_for_adr, before: false, after: true, note: ""}]
      reason: ""
plan:
  description: The ordered changes (cmproxy C(Plan.to_dict())).
  returned: success
  type: list
  elements: dict
plan_text:
  description: The plan as text, for people.
  returned: success
  type: str
plan_warnings:
  description: R9 warnings (also shown as task warnings).
  returned: success
  type: list
  elements: dict
  sample:
    - rule: R9
      server: cm-ss1-sup01.contoso.com
      message: the ADR proxy option is set on a SUP at secondary site SS1, where it has no effect
accounts_created:
  description: Always empty for this module.
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
    - The SDK's structured error in this module's terms - C(type), C(message), C(rule),
      C(field) (the option to change), C(value), C(server) and C(sdk_field) (the SDK's path).
  returned: failure
  type: dict
  sample:
    type: RuleViolation
    rule: R11
    field: use_proxy
    value: true
    server: cm-ps1-sup02.contoso.com
    sdk_field: sup_flags[0]
    message: "[R11] use_proxy=true for cm-ps1-sup02.contoso.com: it has no server proxy, ..."
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cmproxy.configmgr.plugins.module_utils.common import (
    JOURNAL_OPTIONS,
    SUP_OPTIONS,
    Explained,
    OptionNames,
    cmproxy,
    connection_argument_spec,
    fail_with,
    require_cmproxy,
    run_desired,
    sup_options_on,
)


def argument_spec() -> dict[str, dict[str, Any]]:
    spec = connection_argument_spec()
    spec.update(JOURNAL_OPTIONS)
    spec.update(
        servers={"type": "list", "elements": "str", "required": True, "aliases": ["server"]},
        use_proxy={"type": "bool"},
        use_proxy_for_adr={"type": "bool"},
    )
    return spec


def option_names(servers: list[str], params: dict[str, Any]) -> OptionNames:
    """The SDK's refusals in this module's options (its requests are built from `servers`)."""

    def no_server_proxy(error: Any, server: str | None) -> Explained:
        # R11: the options would be on at a server without a proxy. This module cannot set
        # the proxy, so the way out is an earlier site_system_proxy task, or the options off.
        asked = [o for o in SUP_OPTIONS if params.get(o)]
        on = sup_options_on(str(error.value)) or asked
        already = [o for o in on if o not in asked]
        lead = " and ".join(f"{o}=true" for o in asked) or " and ".join(
            f"{o}=true (as it is now)" for o in on
        )
        off = " and ".join(f"{o}=false" for o in on)
        note = f" ({' and '.join(already)} is on already)" if already and asked else ""
        return (
            (asked or on or ["use_proxy"])[0],
            True,
            server,
            f"{lead} for {server}: it has no server proxy, and a software update point's "
            "proxy options only work through one (WSUS would fail with 'The address of the "
            "proxy server cannot be empty'). Give the server a proxy first with "
            "cmproxy.configmgr.site_system_proxy, in a task before this one, or keep the "
            f"options off here: {off}{note}. Nothing was written.",
        )

    return OptionNames(servers, explain={("R11", "sup_flags"): no_server_proxy})


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_one_of=[("use_proxy", "use_proxy_for_adr")],
        supports_check_mode=True,
    )
    require_cmproxy(module)
    p = module.params
    servers = [s for s in p["servers"] if s]
    if not servers:
        module.fail_json(msg="servers must name at least one site system server")
    names = option_names(servers, p)
    try:
        desired = cmproxy.DesiredState(
            sup_flags=[
                cmproxy.SupFlagsRequest(name, p["use_proxy"], p["use_proxy_for_adr"])
                for name in servers
            ]
        )
    except cmproxy.CMProxyError as error:
        fail_with(module, error, names)
        return
    run_desired(module, desired, servers, names=names)


if __name__ == "__main__":
    main()
