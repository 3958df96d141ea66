"""A password never comes out of a value by any generic path: repr, str, attrs.asdict/astuple,
JSON of those, evolve, copy, pickle, logging, `to_dict()`.

Every class that holds a password is checked with a unique marker that must appear nowhere.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import pickle
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest

from cmproxy import (
    Account,
    ConnectionInfo,
    DesiredState,
    ProxyRequest,
    ProxySettings,
    Secret,
    SiteState,
    plan,
    run_transaction,
)
from cmproxy.cli import common_from
from cmproxy.journal import Journal
from cmproxy.retry import RetryPolicy
from cmproxy.testing import InMemorySite

MARKER = f"Pw-{uuid.uuid4().hex}"


def _holders() -> list[Any]:
    proxy = ProxySettings(
        server="proxy.contoso.com", port=8080, account="CONTOSO\\svc-proxy", password=MARKER
    )
    return [
        Secret(MARKER),
        ConnectionInfo(server="cm.contoso.com", username="CONTOSO\\admin", password=MARKER),
        Account("CONTOSO\\svc-proxy", password=MARKER),
        proxy,
        ProxyRequest("cm-ps1.contoso.com", proxy),
        DesiredState(
            proxies=[ProxyRequest("cm-ps1.contoso.com", proxy)],
            accounts=[Account("CONTOSO\\svc-proxy", password=MARKER)],
        ),
    ]


def _renderings(value: Any) -> list[str]:
    """Every generic way a value turns into text or bytes."""
    out = [repr(value), str(value), f"{value}", f"{value!r}"]
    if attrs.has(type(value)):
        for plain in (attrs.asdict(value), attrs.astuple(value)):
            out += [repr(plain), str(plain), json.dumps(plain, default=str)]
        out.append(repr(attrs.evolve(value)))
    if hasattr(value, "to_dict"):
        out.append(json.dumps(value.to_dict(), default=str))
    with contextlib.suppress(TypeError):  # refusing to copy a secret is fine
        out.append(repr(copy.deepcopy(value)))
    with contextlib.suppress(TypeError, pickle.PicklingError):  # so is refusing to pickle it
        out.append(pickle.dumps(value).decode("latin-1"))
    return out


@pytest.mark.parametrize("value", _holders(), ids=lambda v: type(v).__name__)
def test_no_generic_path_shows_the_password(value: Any) -> None:
    for text in _renderings(value):
        assert MARKER not in text


def test_a_plan_with_a_new_account_shows_no_password(state: SiteState) -> None:
    proxy = ProxySettings(
        server="proxy.contoso.com", port=8080, account="CONTOSO\\svc-new", password=MARKER
    )
    built = plan(state, DesiredState(proxies=[ProxyRequest("cm-sup01.contoso.com", proxy)]))
    assert any(c.invocation.has_secret for c in built.changes)
    for change in built.changes:
        for text in _renderings(change):
            assert MARKER not in text
    for text in _renderings(built):
        assert MARKER not in text


def test_logging_a_holder_shows_no_password(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("cmproxy.test")
    with caplog.at_level(logging.DEBUG, logger="cmproxy.test"):
        for value in _holders():
            log.debug("value %s %r", value, value)
            log.debug("asdict %s", attrs.asdict(value) if attrs.has(type(value)) else value)
    assert caplog.records
    assert MARKER not in caplog.text


def test_the_cli_options_show_no_password() -> None:
    common = common_from({"server": "cm.contoso.com", "password": MARKER})
    for text in (repr(common), str(common), json.dumps(dataclasses.asdict(common), default=str)):
        assert MARKER not in text
    assert MARKER in common.secrets()  # what the CLI scrubs from every message


def test_a_transaction_result_and_its_journal_show_no_password(
    state: SiteState, tmp_path: Path
) -> None:
    proxy = ProxySettings(
        server="proxy.contoso.com", port=8080, account="CONTOSO\\svc-new", password=MARKER
    )
    desired = DesiredState(proxies=[ProxyRequest("cm-sup01.contoso.com", proxy)])
    with Journal(tmp_path / "j.sqlite3") as journal:
        result = run_transaction(
            InMemorySite(state), desired, journal=journal, policy=RetryPolicy.for_tests()
        )
        assert result.ok, result
        texts = [*_renderings(result), json.dumps(result.to_dict(), default=str), journal.dump()]
    for text in texts:
        assert MARKER not in text
