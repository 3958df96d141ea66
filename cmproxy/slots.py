"""Shell slots: how many WinRM shells this account's cmproxy processes hold on one endpoint.

A WinRM endpoint refuses a user's shells beyond its MaxShellsPerUser (the PowerShell
plug-in's 25, WinRS's 30), whichever process asks. So the sessions of every cmproxy process of
one OS user share `account_max_shells` slots per (endpoint, account): slot files
`slot-NN` in `~/.cmproxy/shells/<key>/` (or `$CMPROXY_STATE_DIR/shells/<key>/`), each held
by an exclusive, non-blocking lock on the open file (flock on POSIX, msvcrt.locking on
Windows). The operating system drops the lock when the file is closed or its process dies,
so a crashed process never keeps a slot: nothing to reclaim, no pid files to trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cmproxy._exceptions import QuotaExceededError

if TYPE_CHECKING:
    from cmproxy.connection import ConnectionInfo

__all__ = ["ShellSlots", "Slot", "state_dir"]


def state_dir() -> Path:
    """`$CMPROXY_STATE_DIR`, else `~/.cmproxy` (where the journal lives by default too)."""
    env = os.environ.get("CMPROXY_STATE_DIR")
    return Path(env) if env else Path.home() / ".cmproxy"


def _lock(fd: int) -> bool:
    """Take the file's lock without waiting; False if another holder has it."""
    if sys.platform == "win32":
        import msvcrt  # noqa: PLC0415 - Windows only

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl  # noqa: PLC0415 - POSIX only

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class Slot:
    """One held slot; `release()` (or the process ending) frees it. Safe to release twice."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor drops its lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __repr__(self) -> str:
        return f"Slot({self.path.name!r}, held={self.held})"


class ShellSlots:
    """The `limit` slots of one (endpoint, account), shared by every process of this OS user."""

    def __init__(
        self, endpoint: str, account: str, limit: int, directory: Path | None = None
    ) -> None:
        self.endpoint = endpoint
        self.account = account
        self.limit = max(1, limit)
        key = hashlib.sha256(f"{endpoint.lower()}|{account.lower()}".encode()).hexdigest()[:24]
        self.directory = (directory or state_dir()) / "shells" / key

    @classmethod
    def for_connection(cls, info: ConnectionInfo) -> ShellSlots | None:
        """The slots of `info`'s endpoint and account; None if `account_max_shells` is 0."""
        if info.account_max_shells <= 0:
            return None
        return cls(info.endpoint, info.username or "", info.account_max_shells)

    def take(self) -> Slot:
        """A free slot, or QuotaExceededError (transient: wait for one) when all are held."""
        slot = self.try_acquire()
        if slot is None:
            raise QuotaExceededError(
                f"the cmproxy sessions of {self.account or '(no user)'!r} on this machine "
                f"already hold account_max_shells={self.limit} shells on {self.endpoint}; "
                "wait for them to finish, or raise account_max_shells (keep it below the "
                "endpoint's MaxShellsPerUser)."
            )
        return slot

    def try_acquire(self) -> Slot | None:
        """A free slot, or None when all `limit` are held (by this or other processes)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for i in range(self.limit):
            path = self.directory / f"slot-{i:03d}"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            if _lock(fd):
                return Slot(path, fd)
            os.close(fd)
        return None

    def in_use(self) -> int:
        """Slots held now, by any process of this OS user (for diagnostics)."""
        held = 0
        for i in range(self.limit):
            path = self.directory / f"slot-{i:03d}"
            if not path.exists():
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                if not _lock(fd):
                    held += 1
            finally:
                os.close(fd)
        return held
