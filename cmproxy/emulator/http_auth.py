"""HTTP authentication for the emulator: Basic, Negotiate (NTLM or Kerberos) and Kerberos.

Negotiate and Kerberos go through pyspnego's acceptor. Kerberos needs GSSAPI (pyspnego's
`kerberos` extra) and a keytab holding the service's keys (host/, HTTP/ and WSMAN/<host>, the
SPNs a Windows computer account answers to); the acceptor reads the default keytab, which
`KRB5_KTNAME` names (process-global, like NTLM_USER_FILE below). As on WinRM (Auth/Negotiate,
Auth/Kerberos), a 401 offers `Negotiate` and `Kerberos`: "Negotiate" carries SPNEGO (or a raw
NTLM/Kerberos token), "Kerberos" carries a raw Kerberos token with no SPNEGO wrapper, and its
messages are encrypted under the protocol `application/HTTP-Kerberos-session-encrypted`
instead of `application/HTTP-SPNEGO-session-encrypted` (MS-WSMV 2.2.9.1.1 and 2.2.9.1.2).
CredSSP (off by default, as WinRM's Auth/CredSSP) runs pyspnego's CredSSP acceptor: TLS inside
the auth tokens, an inner Negotiate, then the client's delegated password, which is checked
against the configured users as Windows logs the user on with it; its bodies are encrypted by
the TLS session under `application/HTTP-CredSSP-session-encrypted`, in 16 KiB parts
(`multipart/x-multi-encrypted`) when longer (MS-WSMV 2.2.9.1.3).

NTLM authenticates a TCP connection, not a request, so one `ConnectionAuth` lives per
connection. Message encryption (`multipart/encrypted`, HTTP-SPNEGO-session-encrypted) uses the
completed context's `wrap_winrm` / `unwrap_winrm`, exactly the framing pypsrp and pywinrm use.
pyspnego reads users from the file named by `NTLM_USER_FILE` (it checks the file exists when an
acceptor is made and opens it at each authentication); that variable is process-global, so
`UserStore` keeps one file per process holding every user any emulator was started with. The
file holds clear passwords, so on Linux it lives only in memory (`memfd_create`, named through
`/proc/<pid>/fd/<n>`) and vanishes with the process however it ends, SIGKILL included;
elsewhere it is a 0600 temp file removed at exit.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import hashlib
import os
import re
import struct
import tempfile
import threading
from typing import Any

import attrs
import spnego
from spnego.channel_bindings import GssChannelBindings

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
#: MS-WSMV 2.2.9.1.2: the protocol of messages encrypted by a "Kerberos" (not Negotiate) context.
KERBEROS_ENCRYPTED_PROTOCOL = "application/HTTP-Kerberos-session-encrypted"
#: MS-WSMV 2.2.9.1.3: the protocol of CredSSP-encrypted messages, cut into 16 KiB parts.
CREDSSP_ENCRYPTED_PROTOCOL = "application/HTTP-CredSSP-session-encrypted"
CREDSSP_PART_BYTES = 16384
BOUNDARY = b"--Encrypted Boundary"


def encrypted_content_type(protocol: str = ENCRYPTED_PROTOCOL, *, multi: bool = False) -> str:
    """The Content-Type of an encrypted body under `protocol` (MS-WSMV 2.2.9.1)."""
    kind = "multipart/x-multi-encrypted" if multi else "multipart/encrypted"
    return f'{kind};protocol="{protocol}";boundary="Encrypted Boundary"'


ENCRYPTED_CONTENT_TYPE = encrypted_content_type()


class AuthError(Exception):
    """Authentication failed: answer 401 and forget the connection's auth state."""


class EncryptionError(Exception):
    """An encrypted body could not be unwrapped (answer 400, never a crash)."""


def split_user(name: str) -> tuple[str, str]:
    """`DOMAIN\\user` or `user@domain` or `user` → (domain, user)."""
    if "\\" in name:
        domain, user = name.split("\\", 1)
        return domain, user
    if "@" in name:
        user, domain = name.split("@", 1)
        return domain, user
    return "", name


class UserStore:
    """All configured users of this process; keeps the NTLM_USER_FILE in step with them."""

    _lock = threading.Lock()
    _users: dict[str, str] = {}  # noqa: RUF012 - process-global on purpose (NTLM_USER_FILE)
    _path: str | None = None
    _memfds: list[int] = []  # noqa: RUF012 - process-global like the users

    @classmethod
    def register(cls, users: dict[str, str]) -> None:
        with cls._lock:
            changed = False
            for name, password in users.items():
                if cls._users.get(name) != password:
                    cls._users[name] = password
                    changed = True
            if changed or cls._path is None or os.environ.get("NTLM_USER_FILE") != cls._path:
                cls._write()

    @classmethod
    def _write(cls) -> None:
        lines = []
        for name, password in cls._users.items():
            domain, user = split_user(name)
            lines.append(f"{domain}:{user}:{password}")
            if domain:
                # A client that gives no domain (user "admin") sends an empty domain name.
                lines.append(f":{user}:{password}")
        text = ("\n".join(lines) + "\n").encode("utf-8")
        if hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd"):
            # A new memory file per change, never rewritten in place: a handshake that began
            # with the previous one still reads it whole (the old ones stay open, a few bytes).
            fd = os.memfd_create("cmproxy-emulator-ntlm")  # close-on-exec by default
            os.write(fd, text)
            cls._memfds.append(fd)
            cls._path = f"/proc/{os.getpid()}/fd/{fd}"
        else:
            if cls._path is None:
                fd, path = tempfile.mkstemp(prefix="cmproxy-emulator-ntlm-", suffix=".txt")
                os.close(fd)
                cls._path = path
                atexit.register(_remove_quietly, path)
            tmp = cls._path + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, cls._path)
        os.environ["NTLM_USER_FILE"] = cls._path


@attrs.define
class AuthConfig:
    """What a connection's authenticator needs to know about the server."""

    users: dict[str, str]
    https: bool
    #: tls-server-end-point bindings over HTTPS (None over HTTP).
    channel_bindings: GssChannelBindings | None = None
    #: Accept unencrypted bodies over HTTP with Basic (WinRM's AllowUnencrypted: false by
    #: default).
    allow_unencrypted: bool = False
    #: Offer and accept Basic at all (WinRM's Auth/Basic: false by default).
    allow_basic: bool = False
    #: Offer and accept Negotiate (WinRM's Auth/Negotiate, on by default).
    allow_negotiate: bool = True
    #: Offer and accept the "Kerberos" scheme (WinRM's Auth/Kerberos, on by default).
    allow_kerberos: bool = True
    #: Offer and accept CredSSP (WinRM's Auth/CredSSP: off until Enable-WSManCredSSP).
    allow_credssp: bool = False

    def check_basic(self, name: str, password: str) -> str | None:
        """The canonical user name if `name`/`password` match a configured user."""
        domain, user = split_user(name)
        for known, known_pw in self.users.items():
            kdom, kuser = split_user(known)
            if kuser.lower() != user.lower():
                continue
            if domain and kdom and domain.lower() != kdom.lower():
                continue
            if known_pw == password:
                return known
        return None


def tls_server_end_point(cert_der: bytes) -> GssChannelBindings:
    """RFC 5929 tls-server-end-point bindings for a SHA-256 (or weaker → SHA-256) certificate."""
    digest = hashlib.sha256(cert_der).digest()
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest)


@attrs.define
class Challenge:
    """Answer 401 with these WWW-Authenticate values."""

    headers: list[str]


class ConnectionAuth:
    """Auth state of one TCP connection."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.user: str | None = None
        self.scheme: str | None = None  # "basic" | "negotiate" (also Kerberos: connection auth)
        #: The HTTP scheme that authenticated the connection: "Negotiate", "Kerberos", "NTLM".
        self.http_scheme: str | None = None
        self._ctx: Any = None  # spnego ContextProxy once NTLM/Negotiate has started
        self._final_token: bytes | None = None

    def offer(self) -> list[str]:
        offers = []
        if self.config.allow_negotiate:
            offers.append("Negotiate")
        if self.config.allow_kerberos:
            offers.append("Kerberos")
        if self.config.allow_credssp:
            offers.append("CredSSP")
        if self.config.allow_basic:
            offers.append('Basic realm="WSMAN"')
        return offers

    def reset(self) -> None:
        self.user = None
        self.scheme = None
        self.http_scheme = None
        self._ctx = None

    @property
    def encrypted_protocol(self) -> str:
        """The MS-WSMV 2.2.9.1 protocol of this connection's encrypted bodies."""
        scheme = (self.http_scheme or "").lower()
        if scheme == "kerberos":
            return KERBEROS_ENCRYPTED_PROTOCOL
        if scheme == "credssp":
            return CREDSSP_ENCRYPTED_PROTOCOL
        return ENCRYPTED_PROTOCOL

    @property
    def can_encrypt(self) -> bool:
        return self._ctx is not None and self.user is not None and self.scheme == "negotiate"

    def authenticate(self, header: str | None) -> Challenge | None:
        """Process an Authorization header. None = authenticated; Challenge = answer 401.

        Raises AuthError on bad credentials (401 without a token).
        """
        self._final_token = None
        if not header:
            if self.user is not None and self.scheme == "negotiate":
                return None  # NTLM: the connection is authenticated
            return Challenge(self.offer())
        scheme, _, value = header.strip().partition(" ")
        scheme_l = scheme.lower()
        if scheme_l == "basic":
            self._basic(value)
            return None
        if scheme_l in ("negotiate", "ntlm", "kerberos", "credssp"):
            return self._token(scheme, scheme_l, value)
        self.reset()
        raise AuthError(f"unsupported scheme {scheme!r}")

    def _basic(self, value: str) -> None:
        """Basic: `user:password`, base64; authenticates this request (and the connection)."""
        if not self.config.allow_basic:
            raise AuthError("Basic is disabled")
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise AuthError("malformed Basic credentials") from None
        name, sep, password = raw.partition(":")
        user = self.config.check_basic(name, password) if sep else None
        if user is None:
            self.reset()
            raise AuthError("bad Basic credentials")
        self.user, self.scheme, self._ctx = user, "basic", None

    def _token(self, scheme: str, scheme_l: str, value: str) -> Challenge | None:
        """One leg of a Negotiate/NTLM/Kerberos/CredSSP exchange: a Challenge until complete."""
        if not self._scheme_allowed(scheme_l):
            self.reset()
            raise AuthError(f"{scheme} is disabled")
        try:
            token = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            self.reset()
            raise AuthError("malformed token") from None
        if not token:
            self.reset()
            raise AuthError("empty token")
        # A fresh NTLM NEGOTIATE_MESSAGE (type 1) or a SPNEGO NegTokenInit restarts auth.
        if self._ctx is None or self.user is not None or _is_initial_token(token):
            self.user = None
            try:
                self._ctx = _new_acceptor(scheme_l, self.config.channel_bindings)
            except Exception as exc:  # no GSSAPI for "Kerberos": the scheme cannot work
                self.reset()
                raise AuthError(f"{scheme}: {type(exc).__name__}") from None
        try:
            out = self._ctx.step(token)
        except Exception as exc:  # wrong password, bad bindings, garbage tokens
            self.reset()
            raise AuthError(f"{type(exc).__name__}") from None
        if not self._ctx.complete:
            b64 = base64.b64encode(out or b"").decode("ascii")
            return Challenge([f"{scheme} {b64}".strip()])
        if scheme_l == "credssp":
            self.user = self._delegated_user()
        else:
            self.user = self._canonical(self._ctx.client_principal or "")
        self.scheme = "negotiate"
        self.http_scheme = scheme
        self._final_token = out
        self._final_scheme = scheme
        return None

    def _delegated_user(self) -> str:
        """The configured user whose password CredSSP delegated (Windows logs on with it)."""
        creds = self._ctx.get_extra_info("client_credential")
        name = f"{getattr(creds, 'domain_name', '')}\\{getattr(creds, 'username', '')}"
        password = getattr(creds, "password", None)  # None: smart card / Remote Guard creds
        user = self.config.check_basic(name.lstrip("\\"), password) if password else None
        if user is None:
            self.reset()
            raise AuthError("CredSSP delegated credentials refused")
        return user

    def _scheme_allowed(self, scheme_l: str) -> bool:
        if scheme_l == "kerberos":
            return self.config.allow_kerberos
        if scheme_l == "credssp":
            return self.config.allow_credssp
        return self.config.allow_negotiate  # "NTLM" is Negotiate's NTLM, as WinRM treats it

    def final_header(self) -> str | None:
        """WWW-Authenticate of the 200 that completes a SPNEGO exchange (mechListMIC)."""
        if self._final_token:
            return f"{self._final_scheme} {base64.b64encode(self._final_token).decode('ascii')}"
        return None

    def _canonical(self, principal: str) -> str:
        """The configured `DOMAIN\\user` for an NTLM name or a Kerberos `user@REALM`.

        Windows finds the account in Active Directory; the emulated domain's NetBIOS name is
        its realm's first label (CONTOSO.COM → CONTOSO, the name dcpromo proposes). A
        principal that is no configured user keeps its `user@REALM` name.
        """
        domain, user = split_user(principal)
        realm_label = domain.split(".", 1)[0].lower()
        for known in self.config.users:
            kdom, kuser = split_user(known)
            if kuser.lower() != user.lower():
                continue
            if not domain or kdom.lower() in (domain.lower(), realm_label):
                return known
        return principal

    # -- message encryption -------------------------------------------------------------

    def unwrap(self, body: bytes, content_type: str) -> bytes:
        if not self.can_encrypt:
            raise EncryptionError("no security context for an encrypted body")
        m = re.search(r'boundary="?([^";]+)"?', content_type)
        boundary = m.group(1).encode() if m else b"Encrypted Boundary"
        marker = b"--" + boundary
        out = b""
        try:
            parts = [p for p in re.split(re.escape(marker) + rb"\r\n", body) if p]
            for i in range(0, len(parts) - 1, 2):
                header, payload = parts[i], parts[i + 1]
                if payload.endswith(marker + b"--\r\n"):
                    payload = payload[: -len(marker + b"--\r\n")]
                expected = int(header.split(b"Length=")[1].split(b"\r\n")[0].strip())
                data = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
                (hlen,) = struct.unpack("<i", data[:4])
                if hlen < 0 or hlen > len(data) - 4:
                    raise EncryptionError("bad signature length")
                plain = self._ctx.unwrap_winrm(data[4 : 4 + hlen], data[4 + hlen :])
                if len(plain) != expected:
                    raise EncryptionError("length mismatch")
                out += plain
        except EncryptionError:
            raise
        except Exception as exc:
            raise EncryptionError(type(exc).__name__) from None
        if not out:
            raise EncryptionError("no encrypted part")
        return out

    def wrap_body(self, data: bytes) -> tuple[bytes, str]:
        """The encrypted body for `data` and its Content-Type: CredSSP cuts it into 16 KiB
        parts (multipart/x-multi-encrypted), the others send one part."""
        protocol = self.encrypted_protocol
        if protocol != CREDSSP_ENCRYPTED_PROTOCOL or len(data) <= CREDSSP_PART_BYTES:
            return self.wrap(data), encrypted_content_type(protocol)
        parts = [
            self._wrap_part(data[i : i + CREDSSP_PART_BYTES])
            for i in range(0, len(data), CREDSSP_PART_BYTES)
        ]
        return b"".join(parts) + BOUNDARY + b"--\r\n", encrypted_content_type(protocol, multi=True)

    def wrap(self, data: bytes) -> bytes:
        return self._wrap_part(data) + BOUNDARY + b"--\r\n"

    def _wrap_part(self, data: bytes) -> bytes:
        header, enc, padding = self._ctx.wrap_winrm(data)
        wrapped: bytes = (
            BOUNDARY + b"\r\n"
            b"\tContent-Type: " + self.encrypted_protocol.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(data) + padding).encode()
            + b"\r\n"
            + BOUNDARY
            + b"\r\n"
            b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(header))
            + header
            + enc
        )
        return wrapped


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _new_acceptor(scheme_l: str, bindings: GssChannelBindings | None) -> Any:
    """A pyspnego acceptor: SPNEGO for Negotiate/NTLM, bare GSSAPI Kerberos for "Kerberos"."""
    if scheme_l == "kerberos":
        return spnego.server(protocol="kerberos", channel_bindings=bindings)
    if scheme_l == "credssp":
        return spnego.server(protocol="credssp")
    return spnego.server(
        protocol="negotiate",
        channel_bindings=bindings,
        options=spnego.NegotiateOptions.use_negotiate,
    )


def _is_initial_token(token: bytes) -> bool:
    if token.startswith(b"NTLMSSP\x00"):
        return token[8:12] == b"\x01\x00\x00\x00"
    # SPNEGO NegTokenInit is an [APPLICATION 0] GSS wrapper (0x60); NegTokenResp is 0xa1.
    return token[:1] == b"\x60"
