"""Top-level test configuration: the emulator's fixtures, no proxy for 127.0.0.1, and small
tmpfs mounts for the full-disk and read-only cases."""

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cmproxy.retry import RetryPolicy

pytest_plugins = ["cmproxy.emulator.pytest_plugin"]

for _var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(
        [*_hosts, *(h for h in ("127.0.0.1", "localhost") if h not in _hosts)]
    )

# Shell slots (cmproxy.slots) of the tests' sessions and CLI runs live in a temporary state
# directory, not in the user's ~/.cmproxy.
os.environ.setdefault("CMPROXY_STATE_DIR", tempfile.mkdtemp(prefix="cmproxy-state-"))


@pytest.fixture
def policy_on_fake_clock() -> Callable[..., RetryPolicy]:
    """`policy(attempts=, deadline=, backoff=)`: a `RetryPolicy` with a constant backoff, no
    jitter, and its own clock that starts at 0 and moves only when the policy sleeps: its count
    and deadline bounds are shown without waiting and without asserting wall time."""

    def policy(*, attempts: int, deadline: float, backoff: float) -> RetryPolicy:
        now = [0.0]

        def sleep(seconds: float) -> None:
            now[0] += seconds

        return RetryPolicy(
            attempts=attempts,
            deadline=deadline,
            initial_backoff=backoff,
            max_backoff=backoff,
            jitter=0,
            sleep=sleep,
            clock=lambda: now[0],
        )

    return policy


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """`mount_tmpfs(name, size)`: a tmpfs of `size` (mount's size= option) at tmp_path/name, to
    fill or remount read-only; it needs CAP_SYS_ADMIN and skips the test without it. Unmounted
    when the test ends."""
    mounts: list[Path] = []

    def mount(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(path)
        return path

    try:
        yield mount
    finally:
        for path in reversed(mounts):
            subprocess.run(["umount", "-l", str(path)], check=False)
