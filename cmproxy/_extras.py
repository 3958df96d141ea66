"""Which optional libraries an auth protocol needs, and the one-line error when they are absent.

pypsrp and pywinrm import their Kerberos and CredSSP libraries lazily and fail deep inside the
first request ("GSSAPIProxy requires the Python gssapi library", "requests-credssp is not
installed"). cmproxy checks before it connects and names the extra that brings them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from cmproxy._exceptions import ValidationError

__all__ = ["missing_auth_modules", "require_auth_support"]

FindSpec = Callable[[str], Any]


def _needs(auth: str, transport: str, platform: str) -> tuple[str, tuple[str, ...]] | None:
    """(extra, modules) that `auth` over `transport` imports, or None when nothing extra."""
    windows = platform == "win32"
    if auth == "kerberos":
        if transport == "winrm":
            # pywinrm's Kerberos is pykerberos (winkerberos on Windows): its `kerberos` extra.
            return "kerberos", ("winkerberos",) if windows else ("kerberos",)
        # pypsrp → pyspnego: GSSAPI, and krb5 to get a ticket from a password (SSPI on Windows).
        return ("kerberos", ()) if windows else ("kerberos", ("gssapi", "krb5"))
    if auth == "credssp":
        return "credssp", ("requests_credssp",)
    return None


def missing_auth_modules(
    auth: str,
    transport: str,
    *,
    find_spec: FindSpec = importlib.util.find_spec,
    platform: str = sys.platform,
) -> tuple[str, list[str]] | None:
    """(extra, missing modules) when `auth` over `transport` cannot work here, else None."""
    needs = _needs(auth, transport, platform)
    if needs is None:
        return None
    extra, modules = needs
    missing = [name for name in modules if find_spec(name) is None]
    return (extra, missing) if missing else None


def require_auth_support(
    auth: str,
    transport: str,
    *,
    find_spec: FindSpec = importlib.util.find_spec,
    platform: str = sys.platform,
) -> None:
    """Raise a one-line ValidationError naming the extra when `auth` lacks its libraries."""
    found = missing_auth_modules(auth, transport, find_spec=find_spec, platform=platform)
    if found is None:
        return
    extra, missing = found
    raise ValidationError(
        "auth",
        auth,
        f"needs the {extra} extra (missing: {', '.join(missing)}); install it with "
        f"pip install 'cmproxy[{extra}]'",
    )
