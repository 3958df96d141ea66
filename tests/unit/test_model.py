"""ProxySettings, Account, Site, SiteSystemServer: validation names the field; secrets hide."""

from __future__ import annotations

import pickle
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmproxy import (
    Account,
    ProxySettings,
    Secret,
    Site,
    SiteState,
    SiteSystemServer,
    ValidationError,
)

label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z")
hostnames = (
    st.lists(label, min_size=1, max_size=4)
    .filter(lambda labels: not all(x.isdigit() for x in labels))
    .map(".".join)
)
ipv4 = st.ip_addresses(v=4).filter(lambda a: not a.is_unspecified).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: not a.is_unspecified).map(str)
ports = st.integers(min_value=1, max_value=65535)
user_chars = st.characters(
    blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
    blacklist_characters='"/\\[]:;|=,+*?<>@',
)
users = st.text(user_chars, min_size=1, max_size=20).filter(lambda u: u.strip(" .") == u)
domains = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,14}\Z")
accounts = st.builds(lambda d, u: f"{d}\\{u}", domains, users)


@given(host=st.one_of(hostnames, ipv4, ipv6), port=ports, account=st.none() | accounts)
def test_valid_proxy_settings_round_trip_exactly(host: str, port: int, account: str | None) -> None:
    proxy = ProxySettings(server=host, port=port, account=account)
    assert (proxy.server, proxy.port, proxy.account) == (host, port, account)
    again = ProxySettings(**proxy.to_dict())
    assert again == proxy


@given(port=st.integers().filter(lambda p: not 1 <= p <= 65535))
def test_port_out_of_range_is_refused_naming_the_field(port: int) -> None:
    with pytest.raises(ValidationError) as err:
        ProxySettings(server="proxy.contoso.com", port=port)
    assert err.value.field == "proxy.port"
    assert err.value.value == port


@pytest.mark.parametrize("port", [True, "80", 80.0, None])
def test_port_must_be_a_whole_number(port: object) -> None:
    with pytest.raises(ValidationError, match=r"proxy\.port"):
        ProxySettings(server="proxy.contoso.com", port=port)  # type: ignore[arg-type]


@given(
    bad=st.sampled_from(
        [
            "",
            " ",
            " proxy",
            "http://proxy",
            "proxy:8080",
            "-proxy",
            "pro_xy",
            "a..b",
            "proxy!",
            "::",
            "0.0.0.0",  # noqa: S104 - refused as a proxy host, never bound
        ]
    )
    | st.text(alphabet=string.punctuation.replace(".", "").replace("-", ""), min_size=1)
)
def test_invalid_proxy_names_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        ProxySettings(server=bad)
    assert err.value.field == "proxy.server"
    assert repr(bad) in str(err.value)


def test_a_kept_check_still_names_each_callers_field_and_value() -> None:
    """The proxy-host check keeps its answers (a whole read re-checks thousands of equal
    hosts): a bad host refused twice is refused each time, naming that caller's field."""
    from cmproxy.model import validate_proxy_host

    for field in ("proxy.server", "proxies[3].proxy.server", "proxy.server"):
        with pytest.raises(ValidationError) as err:
            validate_proxy_host("proxy.contoso.com:8080", field)
        assert err.value.field == field
        assert err.value.value == "proxy.contoso.com:8080"
        assert "port" in err.value.reason
    assert validate_proxy_host("proxy.contoso.com") == "proxy.contoso.com"


def test_proxy_name_accepts_fqdn_host_ipv4_ipv6_and_idn() -> None:
    for host in ["proxy", "proxy.contoso.com", "10.0.0.1", "fe80::1", "2001:db8::8", "prøxy.eu"]:
        assert ProxySettings(server=host).server == host


def test_enabled_proxy_needs_a_name_and_default_port_is_80() -> None:
    with pytest.raises(ValidationError, match=r"proxy\.server"):
        ProxySettings()
    assert ProxySettings(server="p").port == 80
    assert ProxySettings.disabled().enabled is False


def test_upn_is_refused_with_the_form_to_use() -> None:
    with pytest.raises(ValidationError) as err:
        ProxySettings(server="p", account="svc-proxy@contoso.com")
    assert err.value.field == "proxy.account"
    assert "UPN" in str(err.value)
    assert "CONTOSO\\svc-proxy" in str(err.value)


@given(
    bad=st.sampled_from(["svc", "\\svc", "CONTOSO\\", "CONTOSO\\a/b", "CON\nTOSO\\x", "A\\b\\c"])
)
def test_invalid_accounts_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        ProxySettings(server="p", account=bad)
    assert err.value.field == "proxy.account"


@given(password=st.text(min_size=1).map(lambda t: "Zq9#" + t))
def test_password_never_renders(password: str) -> None:
    proxy = ProxySettings(server="p", account="CONTOSO\\svc", password=password)
    account = Account("CONTOSO\\svc", password=password)
    for text in (
        repr(proxy),
        str(proxy),
        repr(account),
        str(proxy.to_dict()),
        repr(proxy.password),
    ):
        assert password not in text
    assert proxy.password is not None
    assert proxy.password.reveal() == password


def test_password_is_not_part_of_equality_and_cannot_be_pickled() -> None:
    a = ProxySettings(server="p", account="CONTOSO\\svc", password="one")
    b = ProxySettings(server="p", account="CONTOSO\\svc", password="two")
    assert a == b
    with pytest.raises(TypeError):
        pickle.dumps(Secret("s3cret"))


def test_password_without_account_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"proxy\.password"):
        ProxySettings(server="p", password="x")


def test_disabled_proxies_compare_equal_whatever_stale_fields_they_keep() -> None:
    stale = ProxySettings(server="old", port=3128, enabled=False)
    assert stale.same_as(ProxySettings.disabled())
    assert not stale.same_as(ProxySettings(server="old", port=3128))


def test_site_validation() -> None:
    assert Site("ps1", "primary").code == "PS1"
    with pytest.raises(ValidationError, match=r"site\.code"):
        Site("PS", "primary")
    with pytest.raises(ValidationError, match="reserved"):
        Site("CON", "primary")
    with pytest.raises(ValidationError, match=r"site\.type"):
        Site("PS1", "tertiary")
    with pytest.raises(ValidationError, match="secondary site must name its parent"):
        Site("SS1", "secondary")
    with pytest.raises(ValidationError, match="CAS has no parent"):
        Site("CAS", "cas", parent="PS1")


def test_server_names_and_duplicates() -> None:
    assert SiteSystemServer("\\\\cm01.contoso.com", "PS1").name == "cm01.contoso.com"
    with pytest.raises(ValidationError, match=r"server\.name"):
        SiteSystemServer("bad name", "PS1")
    one = SiteSystemServer("cm01", "PS1")
    with pytest.raises(ValidationError, match="R1"):
        SiteState(servers=[one, SiteSystemServer("CM01", "PS1")])


def test_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"proxy\.port"):
        ProxySettings(server="p", port=0)
