"""An ephemeral MIT Kerberos realm on 127.0.0.1 for the end-to-end tests (k5test).

k5test is what python-gssapi and pyspnego test themselves with: it writes krb5.conf and
kdc.conf into a temporary directory, creates the database (kdb5_util), adds principals
(kadmin.local) and starts krb5kdc. Here the KDC listens on 127.0.0.1 only, on ports chosen at
random (several sessions may run at once), and no name is ever looked up in DNS.

The realm plays a domain CONTOSO.COM with one computer, `SPN_HOST`: its keytab holds the SPNs a
Windows computer account answers to (host/, HTTP/ — what pywinrm asks for — and WSMAN/, which
WinRM registers and pypsrp asks for), and one user whose principal maps to the emulator's
`CONTOSO\\cmadmin`.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

REALM = "CONTOSO.COM"
#: The computer the emulator plays; clients connect to 127.0.0.1 and name it for the SPN.
SPN_HOST = "cm01.contoso.com"
USER = "cmadmin"
PRINCIPAL = f"{USER}@{REALM}"
#: k5test hands passwords to `kadmin.local -q` shell-quoted, which kadmin does not unquote:
#: letters, digits and "-" only.
PASSWORD = "Kerb3ros-Passw0rd"
SERVICES = ("host", "HTTP", "WSMAN")

#: The system programs k5test drives, and the Debian package of each.
PROGRAMS = {
    "krb5kdc": "krb5-kdc",
    "kdb5_util": "krb5-kdc",
    "kadmin.local": "krb5-admin-server",
    "kinit": "krb5-user",
    "krb5-config": "libkrb5-dev",
}
#: The Python modules: cmproxy[kerberos] (gssapi, krb5, pykerberos) and k5test (dev).
MODULES = ("gssapi", "krb5", "kerberos", "k5test")


def missing() -> str | None:
    """Why a realm cannot be started here (for a skip reason), or None."""
    absent = [
        f"{name} ({package})"
        for name, package in PROGRAMS.items()
        if shutil.which(name) is None
        and not os.path.exists(f"/usr/sbin/{name}")
        and not os.path.exists(f"/usr/bin/{name}")
    ]
    if absent:
        return "MIT Kerberos programs not installed (.ci/run installs them): " + ", ".join(absent)
    modules = [m for m in MODULES if importlib.util.find_spec(m) is None]
    if modules:
        return (
            "Python modules missing (pip install -e '.[dev,kerberos]', which builds against "
            "libkrb5-dev): " + ", ".join(modules)
        )
    return None


@attrs.frozen
class Realm:
    """A running realm: its k5test object, and the environment a client and acceptor need."""

    k5: Any
    env: dict[str, str]

    @property
    def keytab(self) -> str:
        return str(self.env["KRB5_KTNAME"])

    def kinit(self, principal: str = PRINCIPAL, password: str = PASSWORD) -> None:
        """A ticket for `principal` in the realm's ccache (KRB5CCNAME), as `kinit` gets one."""
        self.k5.kinit(principal, password)

    def kdestroy(self) -> None:
        """Empty the ccache again."""
        with_ccache = self.env["KRB5CCNAME"]
        if os.path.exists(with_ccache):
            os.remove(with_ccache)


def _k5realm(portbase: int) -> Any:
    import k5test

    listen = {"kdc_listen": "127.0.0.1:$port0", "kdc_tcp_listen": "127.0.0.1:$port0"}
    return k5test.K5Realm(
        realm=REALM,
        portbase=portbase,
        create_user=False,
        create_host=False,
        get_creds=False,
        krb5_conf={
            "libdefaults": {
                "dns_lookup_kdc": "false",
                "dns_lookup_realm": "false",
                "dns_canonicalize_hostname": "false",
                "rdns": "false",
            },
            "realms": {
                "$realm": {
                    "kdc": "127.0.0.1:$port0",
                    "admin_server": "127.0.0.1:$port1",
                    "kpasswd_server": "127.0.0.1:$port2",
                }
            },
            "domain_realm": {".contoso.com": "$realm", "contoso.com": "$realm"},
        },
        kdc_conf={"realms": {"$realm": listen}},
    )


@contextmanager
def running_realm() -> Iterator[Realm]:
    """Start the realm (a few tries: a random port may be taken), yield it, stop it."""
    k5: Any = None
    error: Exception | None = None
    for _ in range(3):
        try:
            k5 = _k5realm(random.randrange(20000, 60000, 10))
            break
        except Exception as exc:  # a port in use: krb5kdc exits, k5test raises
            error = exc
    if k5 is None:
        raise RuntimeError(f"could not start a Kerberos realm: {error}")
    try:
        k5.run_kadminl(f"addprinc -pw {PASSWORD} {PRINCIPAL}")
        for service in SERVICES:
            principal = f"{service}/{SPN_HOST}@{REALM}"
            k5.run_kadminl(f"addprinc -randkey {principal}")
            k5.extract_keytab(principal, k5.keytab)
        yield Realm(k5, dict(k5.env))
    finally:
        k5.stop()
        shutil.rmtree(k5.tmpdir, ignore_errors=True)
