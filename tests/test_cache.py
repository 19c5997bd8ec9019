"""The index of the newest shared results (lib/cache `_Recent`): found again, made anew when asked to, dropped
when old or beyond its size, with a spinner only while a result is made."""

from __future__ import annotations

import pytest

from lib import cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(cache.time, "monotonic", c)
    return c


def test_a_result_is_made_once_and_found_again(clock):
    recent, made = cache._Recent(size=2, seconds=60), []
    assert recent.get(("a",), lambda: made.append("a") or "A") == "A"
    assert recent.get(("a",), lambda: made.append("a") or "other") == "A"
    assert recent.get(("b",), lambda: made.append("b") or "B") == "B"
    assert made == ["a", "b"]


def test_results_expire_exactly_after_their_seconds(clock):
    recent, made = cache._Recent(size=4, seconds=60), []
    recent.get("k", lambda: made.append(1) or 1)
    clock.now += 59.999
    assert recent.get("k", lambda: made.append(2) or 2) == 1
    clock.now += 0.001  # exactly 60 s after it was made: made anew
    assert recent.get("k", lambda: made.append(3) or 3) == 3
    assert made == [1, 3]


def test_the_least_recently_used_goes_beyond_the_size(clock):
    recent, made = cache._Recent(size=2, seconds=60), []
    for key in ("a", "b", "a", "c"):  # "a" used again after "b": "b" is the one dropped
        recent.get(key, lambda key=key: made.append(key) or key)
    recent.get("a", lambda: made.append("a again"))
    recent.get("b", lambda: made.append("b again"))
    assert made == ["a", "b", "c", "b again"]


def test_the_spinner_shows_only_while_a_result_is_made(clock, monkeypatch):
    shown = []

    class Spinner:
        def __init__(self, text):
            shown.append(text)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(cache.st, "spinner", Spinner)
    recent = cache._Recent(size=2, seconds=60)
    recent.get("k", lambda: 1, spinner="Building the map...")
    recent.get("k", lambda: 2, spinner="Building the map...")
    recent.get("j", lambda: 3)
    assert shown == ["Building the map..."]


def test_an_import_makes_the_shared_results_anew(tmp_path, monkeypatch):
    """The key holds the store's version: after an import, `shared` runs its query again."""
    from lib import store
    from tests import worlds

    monkeypatch.setenv(store.DB_ENV, str(tmp_path / "s.duckdb"))
    con = cache.get_store(create=True)
    asked = []
    real = cache.QUERIES["levels"]
    monkeypatch.setattr(cache, "QUERIES", {**cache.QUERIES, "levels": lambda c: asked.append(1) or real(c)})
    assert cache.shared(con, "levels") == []
    assert cache.shared(con, "levels") == [] and asked == [1]
    store.import_file(con, worlds.regions_geojson().encode(), table="regions", file_name="regions.geojson")
    assert cache.shared(con, "levels") != [] and asked == [1, 1]
