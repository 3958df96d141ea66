# Copyright (c) cmproxy contributors
# MIT License (see LICENSE in the collection root; SPDX-License-Identifier: MIT)

"""Ansible module: report a ConfigMgr hierarchy's proxies, roles and SUP options."""

from __future__ import annotations

DOCUMENTATION = r"""
module: site_system_proxy_info
short_description: Report the proxies, roles and software update point options of ConfigMgr sites
version_added: 0.1.0
description:
  - Reads, through the SMS Provider and in one pipeline, the sites of the hierarchy, every site
    system server with its proxy and roles, the software update points' proxy options and sync
    source, and the ConfigMgr accounts of each site.
  - For reporting; never changes anything.
author:
  - cmproxy contributors (!UNKNOWN)
extends_documentation_fragment:
  - cmproxy.configmgr.connection
options:
  servers:
    description:
      - Only these site system servers (sites and accounts are always reported whole).
    type: list
    elements: str
  site_codes:
    description:
      - Only the servers, SUP options and accounts of these sites.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    description: Reads only, in check mode too.
  diff_mode:
    support: none
    description: Nothing to diff.
seealso:
  - module: cmproxy.configmgr.site_system_proxy
  - module: cmproxy.configmgr.software_update_point_proxy
"""

EXAMPLES = r"""
- name: Every server of PS1 with its proxy
  cmproxy.configmgr.site_system_proxy_info:
    site_codes: [PS1]
  delegate_to: localhost
  register: ps1

- name: Servers whose SUP options are on but which have no proxy (R11)
  ansible.builtin.debug:
    msg: "{{ ps1.servers | selectattr('sup') | selectattr('sup.use_proxy')
             | rejectattr('proxy.enabled') | map(attribute='name') | list }}"
"""

RETURN = r"""
sites:
  description: The sites read.
  returned: success
  type: list
  elements: dict
  sample:
    - {code: PS1, type: primary, parent: CAS, server: cm-ps1.contoso.com,
       name: Contoso Primary Site 1}
servers:
  description: The site system servers read.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The server name.
      type: str
      sample: cm-ps1-sup01.contoso.com
    site_code:
      description: Its site.
      type: str
      sample: PS1
    proxy:
      description:
        - Its one proxy (R1) - C(enabled), C(server), C(port), C(account) (null when the System
          account connects, R3). Never a password.
      type: dict
      sample: {enabled: true, server: proxy.contoso.com, port: 8080, account: null}
    roles:
      description:
        - Its roles - C(name) (as the console says), C(role_name) (as C(Get-CMSiteRole) says),
          C(proxy_source) (where the role's proxy comes from) and C(rule).
      type: list
      elements: dict
      sample:
        - {name: software update point, role_name: SMS Software Update Point,
           proxy_source: explicit opt-in, rule: R9, uses_server_proxy: true}
    sup:
      description:
        - The software update point's proxy options and sync source; null when the server
          hosts none.
      type: dict
      sample: {use_proxy: true, use_proxy_for_adr: false, sync_source: microsoft update,
               upstream_server: null}
accounts:
  description: The ConfigMgr accounts of each site read (names only; passwords never).
  returned: success
  type: list
  elements: dict
  sample: [{name: CONTOSO\svc-proxy, site_code: PS1}]
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cmproxy.configmgr.plugins.module_utils.common import (
    cmproxy,
    connection_argument_spec,
    connection_info,
    fail_with,
    require_cmproxy,
)


def _server(server: Any) -> dict[str, Any]:
    sup = server.role(cmproxy.SoftwareUpdatePoint)
    return {
        "name": server.name,
        "site_code": server.site_code,
        "proxy": server.proxy.normalized().to_dict(),
        "roles": [
            {
                "name": role.name,
                "role_name": role.ROLE_NAME or role.name,
                "proxy_source": role.PROXY_SOURCE.value,
                "rule": role.RULE,
                "uses_server_proxy": role.uses_server_proxy,
            }
            for role in server.roles
        ],
        "sup": (
            {
                "use_proxy": sup.use_proxy,
                "use_proxy_for_adr": sup.use_proxy_for_adr,
                "sync_source": sup.sync_source.value,
                "upstream_server": sup.upstream_server,
            }
            if sup is not None
            else None
        ),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **connection_argument_spec(),
            "servers": {"type": "list", "elements": "str"},
            "site_codes": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    require_cmproxy(module)
    info = connection_info(module)
    session = None
    try:
        session = cmproxy.connect(info)
        state = session.read_state(
            module.params["servers"] or None, site_codes=module.params["site_codes"] or None
        )
    except cmproxy.CMProxyError as error:
        fail_with(module, error)
        return
    finally:
        if session is not None:
            session.close()
    module.exit_json(
        changed=False,
        sites=[s.to_dict() for s in state.sites],
        servers=[_server(s) for s in state.servers],
        accounts=sorted(
            ({"name": a.name, "site_code": a.site_code} for a in state.accounts),
            key=lambda a: (a["site_code"], a["name"].lower()),
        ),
    )


if __name__ == "__main__":
    main()
