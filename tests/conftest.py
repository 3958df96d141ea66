"""Top-level test configuration: the emulator's fixtures, and no proxy for 127.0.0.1."""

import os
import tempfile

pytest_plugins = ["cmproxy.emulator.pytest_plugin"]

for _var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(
        [*_hosts, *(h for h in ("127.0.0.1", "localhost") if h not in _hosts)]
    )

# Shell slots (cmproxy.slots) of the tests' sessions and CLI runs live in a temporary state
# directory, not in the user's ~/.cmproxy.
os.environ.setdefault("CMPROXY_STATE_DIR", tempfile.mkdtemp(prefix="cmproxy-state-"))
