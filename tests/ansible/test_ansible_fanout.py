"""Growing past one machine: one playbook (ansible/playbooks/hierarchy_proxies.yml) over an
inventory of four hierarchies - four emulators, each with its own endpoint, account and
journal - run by one real `ansible-playbook -f 4`, as a job template with Forks > 1 does on
Automation Controller. Each hierarchy must end with its own proxy, and each journal must hold
its own transaction, committed, with nothing left open.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from cmproxy_ansible_harness import PLAYBOOKS, ansible_tool, run_playbook

from cmproxy import Journal
from cmproxy.emulator.api import Emulator

pytestmark = pytest.mark.e2e

HIERARCHIES = 4
DP1 = "cm-ps1-dp01.contoso.com"
PLAYBOOK = PLAYBOOKS / "hierarchy_proxies.yml"
SET = "Set the proxy of the hierarchy's servers (one transaction per hierarchy)"
READ = "Read the servers back"
CHECK = "Every server of the hierarchy has its proxy"


@pytest.fixture
def hierarchies() -> Iterator[list[Emulator]]:
    """Four emulated hierarchies, each with an account of its own."""
    with ExitStack() as stack:
        emulators = []
        for n in range(1, HIERARCHIES + 1):
            user = f"CONTOSO\\cmadmin-h{n}"
            emu = Emulator(
                seed="demo", users={user: secrets.token_urlsafe(12)}, receive_timeout=3.0
            )
            emulators.append(stack.enter_context(emu))
        yield emulators


def host_vars(n: int, emu: Emulator, journals: Path) -> dict[str, Any]:
    """Hierarchy n's connection, credentials, journal and wanted proxy."""
    return {
        "cm_provider": emu.host,
        "cm_port": emu.port,
        "cm_protocol": "http",
        "cm_auth": "ntlm",
        "cm_user": emu.username,
        "cm_password": emu.password,
        "cm_message_encryption": "always",
        "cm_site_code": "PS1",
        "cm_ignore_proxy": True,
        "cm_read_timeout": 30,
        "cm_operation_timeout": 10,
        "cm_journal": str(journals / f"h{n}.sqlite3"),
        "cm_proxy_servers": [DP1],
        "cm_proxy_server": f"proxy-h{n}.contoso.com",
        "cm_proxy_port": 3120 + n,
    }


def proxy_of(emu: Emulator, server: str) -> tuple[int, str, int]:
    props = emu.state.server_props("PS1", server)
    return (props["UseProxy"].value, props["ProxyName"].value2, props["ProxyServerPort"].value)


def test_one_playbook_over_four_hierarchies(hierarchies: list[Emulator], tmp_path: Path) -> None:
    ansible_tool("ansible-playbook")
    journals = tmp_path / "journals"
    journals.mkdir()
    hosts = {f"hierarchy{n}": host_vars(n, emu, journals) for n, emu in enumerate(hierarchies, 1)}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "configmgr_hierarchies": {
                    "hosts": hosts,
                    "vars": {"ansible_python_interpreter": sys.executable},
                }
            }
        )
    )
    for emu in hierarchies:
        assert proxy_of(emu, DP1)[0] == 0

    run = run_playbook(
        PLAYBOOK, inventory, tmp_path, tmp_path, options=["--forks", str(HIERARCHIES)]
    )

    assert run.rc == 0, run.output
    for n, (host, emu) in enumerate(zip(hosts, hierarchies, strict=True), 1):
        wanted = (1, f"proxy-h{n}.contoso.com", 3120 + n)
        # The site itself, through the emulator's state: each hierarchy got its own proxy.
        assert proxy_of(emu, DP1) == wanted, host
        changed = run.result(SET, host)
        assert changed["changed"] is True
        assert [r["outcome"] for r in changed["servers"]] == ["changed"]
        assert changed["journal"] == hosts[host]["cm_journal"]
        read = run.result(READ, host)
        assert read["servers"][0]["proxy"]["server"] == wanted[1]
        assert run.result(CHECK, host)["_status"] == "ok"
        # Its own journal: its transaction, committed, nothing open, no other hierarchy's.
        journal = Journal(hosts[host]["cm_journal"])
        try:
            assert journal.status(changed["transaction_id"]) == "committed"
            assert journal.open_transactions() == []
            assert journal.open_units() == [] and journal.holds() == []
            for other in hosts:
                if other != host:
                    other_tx = run.result(SET, other)["transaction_id"]
                    with pytest.raises(KeyError):
                        journal.status(other_tx)
        finally:
            journal.close()
    for host in hosts:
        assert re.search(
            rf"^{host}\s+: ok=3\s+changed=1\s+unreachable=0\s+failed=0", run.stdout, re.M
        )
        assert hosts[host]["cm_password"] not in run.output
