"""serve.py reads Streamlit's options without its config lock (`ParsedOptions`): the same values as
Streamlit's own reading, every later change at once, and never a parse half done."""

from __future__ import annotations

import copy
import threading

import pytest
from streamlit import config

import serve


@pytest.fixture
def parsed():
    config.get_config_options()  # parsed, as a server does when it starts (serve.py may be imported before)
    got = serve.ParsedOptions.install()  # serve.py installed it on import: the same object again
    assert got is not None and config.get_option.__self__ is got and got.options is not None
    assert serve.ParsedOptions.install() is got  # once per process, not wrapped twice
    return got


def test_every_option_reads_as_streamlit_reads_it(parsed):
    keys = list(config._config_options)
    assert len(keys) > 100
    for key in keys:
        assert parsed.get_option(key) == parsed.locked(key), key
    sections = {config._config_options[key].section for key in keys}
    assert {"theme", "server", "client"} <= sections
    for section in sections:
        assert config.get_options_for_section(section) == parsed.locked_section(section), section
    assert config.get_option("runner.postScriptGC") is False  # .streamlit/config.toml's, not the default
    with pytest.raises(RuntimeError, match="not defined"):  # an unknown key: Streamlit's own answer
        config.get_option("no.suchOption")


def test_a_value_set_later_is_read_at_once(parsed):
    before = config.get_option("client.toolbarMode")
    other = "minimal" if before != "minimal" else "viewer"
    try:
        config.set_option("client.toolbarMode", other)
        assert config.get_option("client.toolbarMode") == other == parsed.locked("client.toolbarMode")
    finally:
        config.set_option("client.toolbarMode", before)
    assert config.get_option("client.toolbarMode") == before


def test_a_parse_under_way_is_read_only_by_its_own_thread_and_a_finished_one_by_all(parsed):
    held = config._config_options
    seen = []
    reader = threading.Thread(target=lambda: seen.append(config.get_option("runner.postScriptGC")))
    with config._config_lock:  # as a new parse does: fresh defaults in place, filled in under the lock
        config._config_options = copy.deepcopy(config._config_options_template)
        try:
            assert config.get_option("runner.postScriptGC") is True  # the parse's own thread: the value it holds
            config._config_options["runner.postScriptGC"].set_value(False)
            assert config.get_option("runner.postScriptGC") is False  # ... and what it has just set
            reader.start()
            reader.join(0.3)
            assert reader.is_alive() and seen == []  # another thread waits for the parse, reads nothing half done
        finally:
            config._config_options = held
    reader.join(5)
    assert seen == [False]
    parsed.options = None
    asked = []
    real = parsed.locked_section
    parsed.locked_section = lambda section: asked.append(section) or real(section)
    try:  # no parse held: a section is read through Streamlit's own, locked reading
        assert config.get_options_for_section("runner")["postScriptGC"] is False and asked == ["runner"]
    finally:
        parsed.locked_section = real
    config._on_config_parsed.send()  # a parse ends: its options are read from then on, without the lock
    assert parsed.options is held


def test_streamlit_s_own_checks_after_a_parse_read_the_new_options(parsed):
    """What runs when a parse ends (Streamlit's checks, in the parsing thread) reads that parse's values."""
    got = []
    disconnect = config.on_config_parsed(lambda: got.append(config.get_option("client.toolbarMode")),
                                         force_connect=True)
    held = config._config_options
    try:  # a parse with the option given as on the command line
        config.get_config_options(force_reparse=True, options_from_flags={"client.toolbarMode": "minimal"})
        assert got == ["minimal"] and config.get_option("client.toolbarMode") == "minimal"
    finally:
        disconnect()
        with config._config_lock:
            config._config_options = held
            parsed.take()
    assert config.get_option("client.toolbarMode") == parsed.locked("client.toolbarMode")


def test_before_the_first_parse_streamlit_reads_them(parsed, monkeypatch):
    monkeypatch.setattr(parsed, "options", None)
    asked = []
    monkeypatch.setattr(parsed, "locked", lambda key: asked.append(key) or "streamlit's")
    assert config.get_option("server.port") == "streamlit's" and asked == ["server.port"]


def test_a_streamlit_without_these_internals_keeps_its_own_reading(monkeypatch):
    monkeypatch.setattr(config, "get_option", lambda key: "own")
    monkeypatch.setattr(config, "get_options_for_section", lambda section: {"own": section})
    monkeypatch.delattr(config, "_config_options")
    assert serve.ParsedOptions.install() is None
    assert config.get_option("x") == "own" and config.get_options_for_section("s") == {"own": "s"}
