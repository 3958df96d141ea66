"""One RSA key pair per transport for the PSRP SecureString key exchange.

Before a pipeline may carry a SecureString, its runspace pool and the server agree on a session
key: the client sends the public half of an RSA key (MS-PSRP 2.2.2.3 PUBLIC_KEY, a CryptoAPI
PUBLICKEYBLOB), the server answers with a fresh AES session key encrypted to it (2.2.2.4
ENCRYPTED_SESSION_KEY). pypsrp's `RunspacePool.exchange_keys` generates a 2048-bit key for every
pool: about 60 ms of CPU each, twelve at once when a bulk run warms its pools with passwords to
send, which is on the clock when the module import is short. Every pool of one transport sends
the same public key instead: each still gets its own session key, encrypted to it, and the
private half never leaves this process (it lives as long as the transport, as each pool's
session key does).
"""

from __future__ import annotations

import base64
import struct
import threading
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from pypsrp.exceptions import InvalidPSRPOperation
from pypsrp.messages import PublicKey
from pypsrp.powershell import RunspacePool

#: PUBLICKEYBLOB header: PUBLICKEYBLOB (6), CUR_BLOB_VERSION (2), reserved, CALG_RSA_KEYX
#: (0x0000a400), magic "RSA1", bit length 2048 (MS-PSRP 2.2.2.3; the layout pypsrp sends).
_BLOB_HEADER = b"\x06\x02\x00\x00\x00\xa4\x00\x00RSA1\x00\x08\x00\x00"
_KEY_BITS = 2048


class KeyPair:
    """The transport's RSA key, generated on first use (never when no step has a secret)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: rsa.RSAPrivateKey | None = None
        self._blob = ""

    def key(self) -> tuple[rsa.RSAPrivateKey, str]:
        """The private key and its public half as the PUBLIC_KEY message carries it."""
        with self._lock:
            if self._key is None:
                self._key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
                self._blob = public_key_blob(self._key)
            return self._key, self._blob


def public_key_blob(key: rsa.RSAPrivateKey) -> str:
    """Base64 of the PUBLICKEYBLOB of `key`: header, exponent, modulus (little-endian)."""
    numbers = key.public_key().public_numbers()
    modulus = numbers.n.to_bytes(_KEY_BITS // 8, "little")
    return base64.b64encode(_BLOB_HEADER + struct.pack("<I", numbers.e) + modulus).decode()


class KeySharingRunspacePool(RunspacePool):
    """pypsrp's runspace pool, whose key exchange sends the transport's public key rather than
    generating one (otherwise `RunspacePool.exchange_keys` step for step: the pool keeps the
    private key until the session key arrives, `_process_encrypted_session_key` decrypts it
    and clears it)."""

    def __init__(self, *args: Any, key_pair: KeyPair, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._key_pair = key_pair

    def exchange_keys(self) -> None:
        if self._key_exchanged or self._exchange_key is not None:
            return  # exchanged, or an exchange under way
        self._exchange_key, blob = self._key_pair.key()
        for fragment in self._fragmenter.fragment(PublicKey(public_key=blob), self.id):
            self.shell.send("stdin", fragment)
        deadline = time.monotonic() + self.session_key_timeout_ms / 1000
        while not self._key_exchanged:
            if time.monotonic() > deadline:
                raise InvalidPSRPOperation("Timeout while waiting for key exchange")
            self._receive()
