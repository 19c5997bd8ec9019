"""Arrays kept in files beside the store (lib/engine/keptfiles): a new process reads the held complaints and the
servers of the same content instead of building them; any other content, code or a damaged entry builds anew."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lib import store
from lib.engine import heldcounts, keptfiles, network, serving


def _new_process():
    """What a new process starts with: nothing held in memory (the files beside the store stay)."""
    heldcounts.clear()
    network.clear()


def _same(a, b):
    for name in ("starts", "at", "cell", "channel", "cells9"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def _entries(con, name):
    return sorted(p.name for p in keptfiles.folder(keptfiles.store_file(con)).iterdir() if p.name.startswith(name))


def test_a_new_process_reads_the_complaints_and_servers_kept_by_the_last(world_con, monkeypatch):
    first = heldcounts.held(world_con)
    load, servers = serving.served_load(world_con, network.held(world_con))
    assert len(first.at) > 0 and len(servers.site) > 0
    folder = keptfiles.folder(keptfiles.store_file(world_con))
    assert folder.name == "world.duckdb.kept" and folder.stat().st_mode & 0o777 == 0o700
    assert [p.name.split("-")[0] for p in sorted(folder.iterdir())] == ["complaints", "servers"]
    _new_process()

    def refused(*args, **kwargs):
        raise AssertionError("built again although kept")

    monkeypatch.setattr(heldcounts, "_read_arrays", refused)
    monkeypatch.setattr(serving, "serve", refused)
    again = heldcounts.held(world_con)
    _same(again, first)
    assert again.content == first.content and not again.at.flags.writeable
    _, kept_servers = serving.served_load(world_con, network.held(world_con))
    for name in ("place", "site", "share", "km"):
        np.testing.assert_array_equal(getattr(kept_servers, name), getattr(servers, name))


def test_a_hand_edit_that_keeps_the_number_is_built_anew_after_a_start(world_con):
    first = heldcounts.held(world_con)
    old = _entries(world_con, "complaints")
    world_con.execute("UPDATE complaints SET channel = 'app' WHERE channel <> 'app'")
    assert heldcounts.held(world_con) is first  # in this process, as before: the import log did not move
    _new_process()
    edited = heldcounts.held(world_con)
    assert (edited.channel == 2).all() and not (first.channel == 2).all()  # 'app' is the third channel
    new = _entries(world_con, "complaints")
    assert len(new) == 1 and new != old  # the older entry of the name is dropped


def test_an_import_of_complaints_builds_them_anew_and_one_of_sites_keeps_them(world_con, tmp_path):
    first = heldcounts.held(world_con)
    kept_complaints = _entries(world_con, "complaints")
    serving.served_load(world_con, network.held(world_con))
    kept_servers = _entries(world_con, "servers")
    world_con.execute("UPDATE sites SET lat = lat + 0.01")  # the network moved: servers found anew
    _new_process()
    assert _same(heldcounts.held(world_con), first) is None and _entries(world_con, "complaints") == kept_complaints
    serving.served_load(world_con, network.held(world_con))
    assert _entries(world_con, "servers") != kept_servers
    world_con.execute("DELETE FROM complaints WHERE complaint_id IN (SELECT complaint_id FROM complaints LIMIT 1)")
    _new_process()
    assert len(heldcounts.held(world_con).at) == len(first.at) - 1


@pytest.mark.parametrize("damage", ["no manifest", "short array", "empty array", "wrong shape", "bad manifest"])
def test_a_damaged_entry_is_built_anew_never_trusted(world_con, damage):
    first = heldcounts.held(world_con)
    entry = keptfiles.folder(keptfiles.store_file(world_con)) / _entries(world_con, "complaints")[0]
    if damage == "no manifest":  # a process killed before its rename leaves no entry; this is a removed file
        (entry / keptfiles.MANIFEST).unlink()
    elif damage == "short array":
        (entry / "at.npy").write_bytes((entry / "at.npy").read_bytes()[:-8])
    elif damage == "empty array":  # as a power loss can leave it
        (entry / "at.npy").write_bytes(b"")
    elif damage == "bad manifest":
        (entry / keptfiles.MANIFEST).write_text('{"arrays": []}')
    else:
        manifest = json.loads((entry / keptfiles.MANIFEST).read_text())
        manifest["arrays"]["at"][1] = [1]
        (entry / keptfiles.MANIFEST).write_text(json.dumps(manifest))
    _new_process()
    _same(heldcounts.held(world_con), first)
    assert json.loads((entry / keptfiles.MANIFEST).read_text())["arrays"]["at"][1] == [len(first.at)]  # rewritten


def test_nothing_is_kept_for_a_store_in_memory_or_where_nothing_can_be_written(world_con, tmp_path):
    mem = store.connect(":memory:")
    try:
        assert keptfiles.store_file(mem) is None
        assert keptfiles.get(mem, "x", (1,), lambda: {"a": np.arange(3)}, "code")["a"].tolist() == [0, 1, 2]
    finally:
        mem.close()
    blocked = tmp_path / "blocked.duckdb"
    blocked.with_name(blocked.name + keptfiles.SUFFIX).write_text("a file where the folder would be")
    con = store.connect(blocked)
    try:
        got = keptfiles.get(con, "x", (1,), lambda: {"a": np.arange(3)}, "code")
        assert got["a"].tolist() == [0, 1, 2] and not got["a"].flags.writeable
    finally:
        con.close()


def test_the_key_holds_the_content_and_the_code(tmp_path, monkeypatch):
    source = tmp_path / "builder.py"
    source.write_text("A = 1\n")
    code = keptfiles.code(str(source))
    one = keptfiles.digest("x", (1, 2), code)
    assert keptfiles.digest("x", (1, 2), keptfiles.code(str(source))) == one
    assert keptfiles.digest("x", (1, 3), code) != one
    assert keptfiles.digest("y", (1, 2), code) != one
    source.write_text("A = 2\n")
    assert keptfiles.digest("x", (1, 2), keptfiles.code(str(source))) != one
    source.write_text("A = 1\n")
    monkeypatch.setattr(keptfiles, "VERSIONS", (*keptfiles.VERSIONS[:-1], "another h3"))
    assert keptfiles.digest("x", (1, 2), keptfiles.code(str(source))) != one
    assert serving.CODE != heldcounts.CODE  # the servers' code holds the held complaints' code and more


def test_servers_are_not_kept_under_a_network_that_moved_while_it_was_read(world_con, monkeypatch):
    real = network.read

    def read_then_import(con):
        net = real(con)
        con.execute("UPDATE sites SET lat = lat + 0.01")  # an import of sites commits meanwhile
        return net

    monkeypatch.setattr(network, "read", read_then_import)
    net = network.held(world_con)
    assert net.content == ()  # the content it was read under is not known
    serving.served_load(world_con, net)
    assert _entries(world_con, "servers") == []  # found, but not kept under a key it does not hold
    monkeypatch.setattr(network, "read", real)
    network.clear()
    assert network.held(world_con).content != ()
