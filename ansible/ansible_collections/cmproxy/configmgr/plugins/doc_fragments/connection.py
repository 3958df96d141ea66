# Copyright (c) cmproxy contributors
# MIT License (see LICENSE in the collection root; SPDX-License-Identifier: MIT)

"""Shared documentation of the cmproxy.configmgr modules' connection and journal options."""


class ModuleDocFragment:
    # The connection to the SMS Provider. Option names follow the ansible.builtin psrp
    # connection plugin (remote_addr, remote_user, ...), which is also what
    # cmproxy.ConnectionInfo.from_ansible() reads; cmproxy-only options come last.
    DOCUMENTATION = r"""
options:
  remote_addr:
    description:
      - Host name or address of the SMS Provider (the WinRM endpoint to connect to).
      - Not a site system server to change; those are given with O(servers).
      - If not set, the value of the E(CMPROXY_SERVER) environment variable is used.
    type: str
    aliases: [cm_server]
  remote_user:
    description:
      - The user to authenticate as, for example C(CONTOSO\cmadmin).
      - If not set, E(CMPROXY_USERNAME) is used.
    type: str
    aliases: [cm_user, cm_username]
  remote_password:
    description:
      - The password of O(remote_user). Never logged or returned.
      - If not set, E(CMPROXY_PASSWORD) is used.
    type: str
    aliases: [cm_password]
  port:
    description:
      - The WinRM port. Defaults to 5986 for https and 5985 for http.
      - Like the psrp connection plugin, O(protocol) defaults to V(http) when the port is
        5985 and to V(https) otherwise.
      - If not set, E(CMPROXY_PORT) is used.
    type: int
    aliases: [cm_port]
  protocol:
    description:
      - V(https) (TLS) or V(http) (NTLM, Negotiate and Kerberos still encrypt the messages).
      - If not set, E(CMPROXY_SCHEME) is used.
    type: str
    choices: [http, https]
  path:
    description:
      - The URI path of the WinRM endpoint (default V(wsman)).
      - If not set, E(CMPROXY_PATH) is used.
    type: str
  auth:
    description:
      - The authentication protocol (default V(negotiate)).
      - V(basic) over V(http) is refused unless O(allow_basic_over_http=true).
      - If not set, E(CMPROXY_AUTH) is used.
    type: str
    choices: [negotiate, ntlm, kerberos, credssp, basic, certificate]
  cert_validation:
    description:
      - V(validate) (default) checks the server certificate over https, against O(ca_cert) when
        given; V(ignore) skips the check.
      - V(true)/V(false) are accepted too (for E(CMPROXY_CERT_VALIDATION)).
      - If not set, E(CMPROXY_CERT_VALIDATION) is used.
    type: str
  ca_cert:
    description:
      - A PEM bundle of the CA that signed the server certificate.
      - If not set, E(CMPROXY_CA_CERT) is used.
    type: path
    aliases: [cert_trust_path]
  message_encryption:
    description:
      - WinRM message encryption. V(auto) (default) encrypts over http when the
        authentication protocol can; V(never) must be chosen explicitly.
      - If not set, E(CMPROXY_MESSAGE_ENCRYPTION) is used.
    type: str
    choices: [auto, always, never]
  connection_timeout:
    description:
      - Seconds to wait for the connection (default 30).
      - If not set, E(CMPROXY_CONNECTION_TIMEOUT) is used.
    type: float
  read_timeout:
    description:
      - Seconds to wait for an answer (default 60); must be longer than O(operation_timeout).
      - If not set, E(CMPROXY_READ_TIMEOUT) is used.
    type: float
  operation_timeout:
    description:
      - The WSMan operation timeout in seconds (default 20).
      - If not set, E(CMPROXY_OPERATION_TIMEOUT) is used.
    type: float
  proxy:
    description:
      - An HTTP proxy URL used to reach the WinRM endpoint. This is B(not) a site system proxy.
      - If not set, E(CMPROXY_PROXY) is used.
    type: str
  ignore_proxy:
    description:
      - Ignore the E(HTTP_PROXY)/E(HTTPS_PROXY) environment variables and connect directly.
      - If not set, E(CMPROXY_IGNORE_PROXY) is used.
    type: bool
  certificate_pem:
    description:
      - Client certificate (PEM) for O(auth=certificate).
      - If not set, E(CMPROXY_CERTIFICATE_PEM) is used.
    type: path
  certificate_key_pem:
    description:
      - Private key (PEM) of O(certificate_pem).
      - If not set, E(CMPROXY_CERTIFICATE_KEY_PEM) is used.
    type: path
  configuration_name:
    description:
      - The PowerShell session configuration (default V(Microsoft.PowerShell)).
      - If not set, E(CMPROXY_CONFIGURATION_NAME) is used.
    type: str
  negotiate_hostname_override:
    description:
      - The host name Kerberos uses in the service principal name (V(WSMAN/<name>)) when
        O(remote_addr) is an address or an alias, as in the psrp connection plugin.
      - If not set, E(CMPROXY_NEGOTIATE_HOSTNAME_OVERRIDE) is used.
    type: str
  allow_basic_over_http:
    description:
      - Allow O(auth=basic) over plain http, which sends the password unencrypted.
      - If not set, E(CMPROXY_ALLOW_BASIC_OVER_HTTP) is used.
    type: bool
  site_code:
    description:
      - The site code of the SMS Provider's site (its site drive). Guessed when not set.
      - If not set, E(CMPROXY_SITE_CODE) is used.
    type: str
  transport:
    description:
      - V(psrp) (default; PowerShell Remoting, one runspace for the whole task) or V(winrm)
        (WinRS processes).
      - cmproxy checks the name and fails the task with the names it knows.
      - If not set, E(CMPROXY_TRANSPORT) is used.
    type: str
  module_path:
    description:
      - Full path of C(ConfigurationManager.psd1) on the SMS Provider, when it is not found
        otherwise.
      - If not set, E(CMPROXY_MODULE_PATH) is used.
    type: str
  provider_machine_name:
    description:
      - The SMS Provider's FQDN for the site drive (default the server's own name).
      - If not set, E(CMPROXY_PROVIDER_MACHINE_NAME) is used.
    type: str
  max_pools:
    description:
      - Runspace pools (WinRM shells) one session opens at most for concurrent steps.
      - If not set, E(CMPROXY_MAX_POOLS) is used, else 12.
    type: int
  account_max_shells:
    description:
      - Shells all cmproxy processes of this account hold at most on the endpoint, across
        processes on the controller; keep it below the endpoint's MaxShellsPerUser.
        V(0) turns the cross-process cap off.
      - If not set, E(CMPROXY_ACCOUNT_MAX_SHELLS) is used, else 20.
    type: int
  quota_wait:
    description:
      - Seconds a session waits for a free shell when the WinRM quota is full.
      - If not set, E(CMPROXY_QUOTA_WAIT) is used, else 120.
    type: float
requirements:
  - python >= 3.11
  - cmproxy (on the host that runs the module, usually the controller)
notes:
  - The module runs where the task runs - use C(delegate_to=localhost) or a play on
    C(localhost) with C(connection=local). It connects to the SMS Provider itself over WinRM.
  - All connection options can be set once for every module of the collection with
    C(module_defaults) and the C(group/cmproxy.configmgr.configmgr) action group.
"""

    # The transaction journal of the modules that write.
    JOURNAL = r"""
options:
  journal_path:
    description:
      - The cmproxy transaction journal (a SQLite file on the host that runs the module).
        Every change is recorded there before it is written, so an interrupted run can be
        recovered with C(cmproxy recover).
      - Default the SDK's journal, E(CMPROXY_JOURNAL) or C(~/.cmproxy/journal.sqlite3).
      - Not used in check mode (nothing is written).
    type: path
"""
