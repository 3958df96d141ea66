"""Stands in for pip's `get-pip.py`, which ansible-test downloads to bootstrap pip into each
sanity-test virtual environment and which cannot be downloaded here.

ansible-test documents the way out ("The bootstrap script can be manually downloaded and saved
to: ~/.ansible/test/cache/get_pip_<version>.py"); this file is saved there instead. Like
get-pip.py it is run with the venv's python and pip-install arguments (`pip==24.2 ...`,
`--no-setuptools`, `--no-wheel`): it installs the pip wheel bundled with the interpreter
(`ensurepip`, no network) and then lets that pip run the install ansible-test asked for.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}


def main() -> int:
    # A child process: ensurepip.bootstrap() in this one would set PIP_CONFIG_FILE=/dev/null
    # for the rest of it, and the pip below would lose the machine's pip configuration.
    bundled = subprocess.call([sys.executable, "-m", "ensurepip"])
    if bundled:
        return bundled
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    if not args:
        return 0
    return subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *args])


if __name__ == "__main__":
    sys.exit(main())
