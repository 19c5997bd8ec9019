"""The state of an upgrade as of a date: the rules written once, for Ibis expressions and for numpy arrays.

`linkage.upgrade_flags_expr` evaluates them in the store (the rollout page lists late and
blocked upgrades from it). `linkage.relief` evaluates them here in numpy (`evaluate`), over
every not-cancelled upgrade held once per store content, and aggregates them per site
(`per_site`) and then per hotspot. Why numpy there: the upgrades and links are small
(60,000 and 20,000 rows at the benchmark's size), and on them each DuckDB query of the relief cost
55-75 ms of a map view's 150 ms budget, nearly all of it fixed cost per operator and the
conversion of text columns, while the same rules over held arrays take about 2 ms.

Written against `Ops`, the few operations that differ between the two (a flag of a
condition, CASE WHEN, IS NULL, a NULL date). Every condition feeds a flag or a CASE WHEN
and none is negated, so a comparison with NULL (SQL: unknown) and with NaT (numpy: false)
take the same branch; tests/test_rules.py checks both on random upgrades.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

COLUMNS = ("installed_actual", "on_air_planned", "on_air_actual", "link_id", "completion_planned",
           "completion_actual")
"""The inputs of the rules per upgrade (the link's completion dates joined on its transport_link_id)."""

FLAGS = ("up_done", "up_date", "link_done", "link_date", "ready", "blocked", "late", "undated", "own_date")
"""What the rules give per upgrade (flags are 1 or 0)."""


class IbisOps:
    """The operations on Ibis expressions (compiled to CASE WHEN and IS NULL on every engine)."""

    null_date = ibis.null("date")

    @staticmethod
    def flag(cond):
        return ibis.cases((cond, 1), else_=0)

    @staticmethod
    def cases(pairs, else_):
        return ibis.cases(*pairs, else_=else_)

    @staticmethod
    def isnull(x):
        return x.isnull()


class NumpyOps:
    """The same operations on numpy arrays (dates datetime64[D], NaT for NULL)."""

    null_date = np.datetime64("NaT", "D")

    @staticmethod
    def flag(cond):
        return np.asarray(cond, dtype=bool).astype("int64")

    @staticmethod
    def cases(pairs, else_):
        out = else_
        for cond, value in reversed(pairs):
            out = np.where(cond, value, out)
        return out

    @staticmethod
    def isnull(x):
        return pd.isna(x)


def _stage_one(u: Mapping, d, ops) -> dict:
    """The per-upgrade facts as of `d`: on air, its date, link done, the link's date, ready."""
    no_link = ops.isnull(u["link_id"])
    return {
        "up_done": ops.flag(u["on_air_actual"] <= d),
        "up_date": ops.cases([(u["on_air_actual"] <= d, u["on_air_actual"])], u["on_air_planned"]),
        "link_done": ops.flag(no_link | (u["completion_actual"] <= d)),
        "link_date": ops.cases([(no_link, ops.null_date), (u["completion_actual"] <= d, u["completion_actual"])],
                               u["completion_planned"]),
        "ready": ops.flag((u["installed_actual"] <= d) | (u["on_air_actual"] <= d) | (u["on_air_planned"] <= d)),
    }


def _stage_two(ups: Mapping, d, ops) -> dict:
    """What follows from `_stage_one`'s facts: blocked, late, undated, own_date."""
    open_link = ups["link_done"] == 0
    link_date = ups["link_date"]
    return {
        "blocked": ops.flag(open_link & (ups["ready"] == 1)
                            & (ops.isnull(link_date) | (link_date < d) | (link_date > ups["on_air_planned"]))),
        "late": ops.flag((ups["up_done"] == 0) & (ups["on_air_planned"] < d)),
        "undated": ops.flag(open_link & ops.isnull(link_date)),
        "own_date": ops.cases([(link_date > ups["up_date"], link_date)], ups["up_date"]),
    }


def site_stage(u: Mapping, d, ops) -> dict:
    """An upgrade's stage as of `d` (its latest milestone with an actual date <= d, checked from on air down:
    3 on_air, 2 installed, 1 permit, 0 planned) and whether it is late (not on air, on_air_planned < d)."""
    return {
        "stage": ops.cases([(u["on_air_actual"] <= d, 3), (u["installed_actual"] <= d, 2),
                            (u["permit_actual"] <= d, 1)], 0),
        "late": ops.flag((ops.isnull(u["on_air_actual"]) | (u["on_air_actual"] > d)) & (u["on_air_planned"] < d)),
    }


def link_state(link: Mapping, d, ops):
    """A transport link's expansion state as of `d`: done, no_expansion, late or planned (see asof.links_as_of)."""
    planned, actual = link["completion_planned"], link["completion_actual"]
    return ops.cases([(actual <= d, "done"), (ops.isnull(planned) & ops.isnull(actual), "no_expansion"),
                      (planned < d, "late")], "planned")


def named(codes: np.ndarray, names) -> pd.Series:
    """The text column `names[codes]` (pandas' str dtype), through Arrow: 10x quicker than from an object array."""
    arr = pa.array(list(names), type=pa.string()).take(pa.array(np.asarray(codes, dtype="int64")))
    return arr.to_pandas(types_mapper={pa.string(): pd.StringDtype(na_value=np.nan)}.get)


def day(as_of) -> np.datetime64:
    """A date as numpy's datetime64[D], what the rules compare arrays with."""
    return np.datetime64(pd.Timestamp(as_of).date(), "D")


def expr_stages(u: Mapping, d) -> tuple:
    """The two stages for Ibis: `_stage_one(u, d)` and a function of the table selected from it -> stage two."""
    return _stage_one(u, d, IbisOps), lambda ups: _stage_two(ups, d, IbisOps)


def evaluate(u: Mapping[str, np.ndarray], as_of: dt.date) -> dict[str, np.ndarray]:
    """The rules as of `as_of` over arrays `u` (`COLUMNS`; dates datetime64[D] with NaT, link_id anything
    `pd.isna` reads as empty where there is no link): `FLAGS` -> array, one entry per upgrade."""
    d = day(as_of)
    one = _stage_one(u, d, NumpyOps)
    return {**one, **_stage_two({**u, **one}, d, NumpyOps)}


def per_site(site: np.ndarray, n_sites: int, flags: Mapping[str, np.ndarray], link: np.ndarray) -> dict:
    """The upgrades' `evaluate` flags aggregated per site: n_upgrades, all_done, any_blocked, any_late,
    any_undated, relief_date, pick_link_id, pick_date, pick_known -> array over sites 0..n_sites-1.

    `site` is each upgrade's site (0..n_sites-1, sorted ascending), `link` its link's number (-1: none; numbers
    in the order of the link ids). all_done is the minimum of up_done x link_done, the any_ flags maxima
    (float, NaN for a site without upgrades), relief_date the latest own_date (NaT when none); the pick is the
    link of a blocked upgrade, unknown date first, then the latest, ties by link id: pick_link_id its number
    (-1: none blocked), pick_date, pick_known (1: dated).
    """
    n_up = np.bincount(site, minlength=n_sites).astype("int64")
    agg = grouped(site, n_sites)
    out = {"n_upgrades": n_up,
           "all_done": agg(np.minimum, (flags["up_done"] * flags["link_done"]).astype("float64"), np.nan)}
    for name, flag in (("any_blocked", "blocked"), ("any_late", "late"), ("any_undated", "undated")):
        out[name] = agg(np.maximum, flags[flag].astype("float64"), np.nan)
    out["relief_date"] = latest(agg, flags["own_date"])
    out.update(pick(site, flags["blocked"] == 1, flags["link_date"], link, n_sites))
    return out


def grouped(group: np.ndarray, n_groups: int):
    """A reducer over the groups of rows `group` (numbers 0..n_groups-1, sorted ascending):
    agg(ufunc, values, empty) -> ufunc reduced over each group's values, `empty` for a group without rows."""
    firsts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else np.zeros(0, dtype="int64")
    has = group[firsts]

    def agg(ufunc, values, empty):
        out = np.full(n_groups, empty, dtype=values.dtype)
        if group.size:
            out[has] = ufunc.reduceat(values, firsts)
        return out

    return agg


def spans(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every position in each [lo_i, hi_i), concatenated: (i of each position, the position)."""
    n = hi - lo
    row = np.repeat(np.arange(n.size), n)
    return row, np.repeat(lo, n) + np.arange(row.size) - np.repeat(np.cumsum(n) - n, n)


def latest(agg, dates: np.ndarray) -> np.ndarray:
    """The latest of `dates` (datetime64[D]) per group of `agg` (see `per_site`): NaT is the least int64, so the
    maximum skips it unless every date of a group is NaT."""
    return agg(np.maximum, dates.astype("datetime64[D]").view("int64"), np.iinfo("int64").min).view("datetime64[D]")


def pick(group: np.ndarray, candidate: np.ndarray, date: np.ndarray, link: np.ndarray, n_groups: int) -> dict:
    """Per group 0..n_groups-1, the link of its best candidate row: unknown date first, then the latest date,
    ties by the smaller link number: pick_link_id (-1: no candidate), pick_date, pick_known."""
    rows = np.flatnonzero(candidate)
    date = date.astype("datetime64[D]")
    known = (~np.isnat(date[rows])).astype("int64")
    days = np.where(known == 1, date[rows].view("int64"), 0)
    order = rows[np.lexsort((link[rows], -days, known, group[rows]))]
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]] if order.size else order
    out = {"pick_link_id": np.full(n_groups, -1, dtype="int64"),
           "pick_date": np.full(n_groups, np.datetime64("NaT"), dtype="datetime64[D]"),
           "pick_known": np.zeros(n_groups, dtype="int64")}
    out["pick_link_id"][group[first]] = link[first]
    out["pick_date"][group[first]] = date[first]
    out["pick_known"][group[first]] = (~np.isnat(date[first])).astype("int64")
    return out
