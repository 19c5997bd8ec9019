"""The internal dashboard serves this machine only, unless the operator says a proxy signs users in."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lib import access
from tests.test_pages import APP


@pytest.mark.parametrize(("address", "public", "allowed", "refused"), [
    ("127.0.0.1", False, False, False), ("localhost", False, False, False), ("::1", False, False, False),
    ("0.0.0.0", False, False, True), ("", False, False, True), (None, False, False, True),
    ("192.168.1.5", False, False, True), ("0.0.0.0", False, True, False), ("0.0.0.0", True, False, False),
])
def test_who_may_be_served(address, public, allowed, refused):
    assert (access.refusal(address, public, allowed) is not None) == refused


@pytest.mark.parametrize(("value", "allowed"), [("1", True), ("yes", True), ("", False), ("0", False)])
def test_the_setting(monkeypatch, value, allowed):
    monkeypatch.setenv(access.OPEN_ENV, value)
    assert access.open_to_network() == allowed


def _run_on(address: str, monkeypatch) -> AppTest:
    real = st.get_option
    monkeypatch.setattr(st, "get_option", lambda key: address if key == "server.address" else real(key))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at


def test_another_address_without_sign_in_is_refused(tiny_db, monkeypatch):
    at = _run_on("0.0.0.0", monkeypatch)
    assert not at.exception and len(at.error) == 1 and access.OPEN_ENV in at.error[0].value
    assert not at.metric and not at.title  # no page, no figure


def test_the_operator_may_open_it_behind_a_proxy(tiny_db, monkeypatch):
    monkeypatch.setenv(access.OPEN_ENV, "1")
    at = _run_on("0.0.0.0", monkeypatch)
    assert not at.exception and not at.error and [t.value for t in at.title] == ["Overview"]
