"""The transport table (`cmproxy.transport_names`) is the one list of transports: the
connection option, `ConnectionInfo` and `create_transport` all read it."""

from __future__ import annotations

import pytest

from cmproxy import ConnectionInfo, ValidationError
from cmproxy.connection_options import by_field
from cmproxy.transport_names import DEFAULT_TRANSPORT, TRANSPORT_NAMES, TRANSPORTS
from cmproxy.transports import Transport, create_transport


def test_the_option_offers_the_table() -> None:
    option = by_field("transport")
    assert option is not None
    assert option.choices == TRANSPORT_NAMES
    assert {"psrp", "winrm"} <= set(TRANSPORT_NAMES)
    assert (
        option.default == DEFAULT_TRANSPORT == ConnectionInfo(server="h", auth="kerberos").transport
    )
    for name, entry in TRANSPORTS.items():
        assert f"{name} ({entry.summary})" in option.help


def test_a_transport_not_in_the_table_is_refused_naming_field_value_and_choices() -> None:
    with pytest.raises(ValidationError) as refused:
        ConnectionInfo(server="h", transport="ssh")
    assert (refused.value.field, refused.value.value) == ("transport", "ssh")
    assert refused.value.reason == f"must be one of: {', '.join(TRANSPORT_NAMES)}"


@pytest.mark.parametrize("name", TRANSPORT_NAMES)
def test_create_transport_builds_the_class_the_table_names(name: str) -> None:
    info = ConnectionInfo(server="cm01.contoso.com", username="u", password="p", transport=name)
    transport = create_transport(info)
    module, _, cls = TRANSPORTS[name].factory.partition(":")
    assert isinstance(transport, Transport)
    assert (type(transport).__module__, type(transport).__name__) == (module, cls)
    assert transport.info is info
