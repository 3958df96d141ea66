"""Plans, the hierarchy and desired states as tables: HTML for Jupyter and DataFrames, with
values as an admin writes them (issue 17: the plan table showed `None → 'CONTOSO\\\\svc…'`
and an empty "why" column; `SiteState` had no table, no DataFrame and an 8,400-character repr).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cmproxy import (
    DesiredState,
    Journal,
    PlanOptions,
    ProxyRequest,
    ProxySettings,
    RetryPolicy,
    SiteState,
    SupFlagsRequest,
    apply_bulk,
    parse_desired,
    plan,
)
from cmproxy.bulk import _progress_bar
from cmproxy.testing import InMemorySite

pd = pytest.importorskip("pandas")

SPEC = """\
version: 1
options:
  sup_flags_on_proxy_removal: turn_off
sites:
  PS1:
    proxy: {server: proxy.contoso.com, port: 8080, account: CONTOSO\\svc-proxy}
    sup: {use_proxy: true, use_proxy_for_adr: true}
servers:
  cm-sup01.contoso.com:
    proxy: none
    sup: {use_proxy: false, use_proxy_for_adr: false}
  cm-mcc01.contoso.com:
    proxy: {server: proxy.contoso.com, port: 8080}
"""


class _Cells(HTMLParser):
    """The text of each table row's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table(markup: str) -> list[dict[str, str]]:
    parser = _Cells()
    parser.feed(markup)
    head, *body = parser.rows
    return [dict(zip(head, row, strict=True)) for row in body]


def test_the_plan_table_shows_values_as_an_admin_writes_them(state: SiteState) -> None:
    the_plan = plan(state, parse_desired(SPEC))
    markup = the_plan._repr_html_()
    rows = _table(markup)
    assert len(rows) == len(the_plan)
    by_target = {(r["server"], r["change"]): r for r in rows}
    ps1 = by_target["cm-ps1.contoso.com", "set server proxy"]
    assert ps1["before"] == "proxy-old.contoso.com:8080 as CONTOSO\\svc-proxy"
    assert ps1["after"] == "proxy.contoso.com:8080 as CONTOSO\\svc-proxy"
    assert "site PS1 default" in ps1["why"]
    assert by_target["cm-sup01.contoso.com", "set server proxy"]["after"] == "off"
    sup_off = by_target["cm-sup01.contoso.com", "set SUP proxy options"]
    assert (sup_off["before"], sup_off["after"]) == ("sync on, ADR on", "sync off, ADR off")
    assert sup_off["why"].startswith("R11")
    sup_on = by_target["cm-ps1.contoso.com", "set SUP proxy options"]
    assert (sup_on["before"], sup_on["after"]) == ("sync off, ADR off", "sync on, ADR on")
    for row in rows:
        assert row["why"], row  # every change says why it is there
        for column, cell in row.items():
            if column == "cmdlet":
                continue  # PowerShell, quoted as PowerShell quotes
            assert "None" not in cell and "'" not in cell and "\\\\" not in cell, row


def test_the_plan_dataframe_has_the_rows_of_the_table(state: SiteState) -> None:
    the_plan = plan(state, parse_desired(SPEC))
    frame = the_plan.to_dataframe()
    rows = _table(the_plan._repr_html_())
    assert list(frame.columns) == list(rows[0])
    assert frame.astype(str).to_dict("records") == rows


def test_site_state_has_a_short_repr_a_table_and_a_dataframe(state: SiteState) -> None:
    text = repr(state)
    assert text == "<SiteState: 3 site(s) (CAS, PS1, SS1), 9 server(s), 1 account(s)>"
    rows = _table(state._repr_html_())
    assert len(rows) == len(state.servers)
    sup01 = next(r for r in rows if r["server"] == "cm-sup01.contoso.com")
    assert sup01 == {
        "site": "PS1",
        "server": "cm-sup01.contoso.com",
        "roles": "software update point",
        "proxy": "proxy-old.contoso.com:8080",
        "account": "CONTOSO\\svc-proxy",
        "SUP sync": "on",
        "SUP ADR": "on",
    }
    scp = next(r for r in rows if r["server"] == "cm-scp01.contoso.com")
    assert (scp["proxy"], scp["account"]) == ("off", "—")
    frame = state.to_dataframe()
    assert len(frame) == len(state.servers)
    assert frame.astype(str).to_dict("records") == rows


def test_a_desired_spec_and_a_desired_state_render_as_tables(state: SiteState) -> None:
    spec = parse_desired(SPEC)
    markup = spec._repr_html_()
    assert "sup_flags_on_proxy_removal: turn_off" in markup
    assert _table(markup) == [
        {
            "applies to": "site PS1",
            "proxy": "proxy.contoso.com:8080",
            "account": "CONTOSO\\svc-proxy",
            "SUP sync": "on",
            "SUP ADR": "on",
        },
        {
            "applies to": "server cm-sup01.contoso.com",
            "proxy": "off",
            "account": "—",
            "SUP sync": "off",
            "SUP ADR": "off",
        },
        {
            "applies to": "server cm-mcc01.contoso.com",
            "proxy": "proxy.contoso.com:8080",
            "account": "System account",
            "SUP sync": "—",
            "SUP ADR": "—",
        },
    ]
    assert len(spec.to_dataframe()) == 3
    desired = DesiredState(
        proxies=[ProxyRequest("cm-dp01.contoso.com", ProxySettings(server="p.contoso.com"))],
        sup_flags=[SupFlagsRequest("cm-sup01.contoso.com", use_proxy=True)],
        options=PlanOptions(sup_flags_on_proxy_removal="turn_off"),
    )
    rows = _table(desired._repr_html_())
    assert rows[0]["proxy"] == "p.contoso.com:80"
    assert rows[0]["account"] == "System account"
    assert (rows[1]["SUP sync"], rows[1]["SUP ADR"]) == ("on", "—")
    assert desired.to_dataframe().astype(str).to_dict("records") == rows


def test_the_progress_bar_outside_a_notebook_is_text_and_never_warns() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = _progress_bar(3, True)
        bar.update(1)
        bar.close()
    assert type(bar).__module__ == "tqdm.std"


def test_the_library_logger_has_a_null_handler() -> None:
    """A warning of the library's loggers prints nothing unless the application asks."""
    script = "import logging, cmproxy; logging.getLogger('cmproxy.retry').warning('retrying')"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stderr == ""


def test_results_show_before_and_after_as_an_admin_writes_them(
    state: SiteState, tmp_path: Path
) -> None:
    site = InMemorySite(state)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        results = apply_bulk(
            [site],
            parse_desired(SPEC),
            journal=journal,
            policy=RetryPolicy.for_tests(),
            progress=False,
        )
    by_server = {r["server"]: r for r in results.records()}
    assert by_server["cm-sup01.contoso.com"]["before"] == (
        "proxy-old.contoso.com:8080 as CONTOSO\\svc-proxy; SUP sync on, ADR on"
    )
    assert by_server["cm-sup01.contoso.com"]["after"] == "off; SUP sync off, ADR off"
    frame = results.to_dataframe()
    assert frame.to_dict("records") == results.records()
