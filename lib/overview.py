"""What the store holds: row counts, date ranges, last import and per-region figures.

Plain SQL on the store (no streamlit). A point belongs to a region when the parent of
its resolution-9 cell at `cells.REGION_RES` is one of the region's cells: an integer
equi-join, no point-in-polygon test.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from lib import cells, schema

PER_INHABITANTS = 10_000
"""Complaint rates are given per this many inhabitants."""

REGION_COLUMNS = ["region_id", "name", "population", "sites", "upgrades", "upgrades_on_air", "pct_on_air",
                  "transport_links", "complaints", "complaints_per_10k"]

# (label, table, column): the date ranges the overview reports.
DATE_RANGES = (
    ("Complaints received", "complaints", "received_at"),
    ("Upgrades on air (planned)", "upgrades", "on_air_planned"),
    ("Transport links complete (planned)", "transport_links", "completion_planned"),
)

# Every actual (observed) date in the store: the latest of them is "data as of".
ACTUAL_DATES = (
    ("complaints", "received_at"),
    ("upgrades", "permit_actual"),
    ("upgrades", "installed_actual"),
    ("upgrades", "on_air_actual"),
    ("transport_links", "completion_actual"),
)


@dataclass(frozen=True)
class LastImport:
    """The newest row of the import log."""

    import_id: int
    table: str
    file_name: str
    imported_at: dt.datetime


@dataclass(frozen=True)
class Summary:
    """What the store holds, in a few figures."""

    counts: dict[str, int]  # input table -> rows
    date_ranges: dict[str, tuple[dt.date | None, dt.date | None]] = field(default_factory=dict)  # label -> (min, max)
    last_import: LastImport | None = None
    data_as_of: dt.datetime | None = None
    imports: int = 0

    @property
    def empty(self) -> bool:
        """True when no input table has a row."""
        return not any(self.counts.values())


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchall()[0][0]


def _as_date(value) -> dt.date | None:
    if value is None:
        return None
    return value.date() if isinstance(value, dt.datetime) else value


def summary(con: duckdb.DuckDBPyConnection) -> Summary:
    """Row counts per input table, date ranges, the last import and the data's as-of time."""
    counts = {name: int(_scalar(con, f"SELECT count(*) FROM {name}")) for name in schema.TABLES}
    ranges = {}
    for label, table, column in DATE_RANGES:
        lo, hi = con.execute(f'SELECT min("{column}"), max("{column}") FROM {table}').fetchall()[0]
        ranges[label] = (_as_date(lo), _as_date(hi))
    union = " UNION ALL ".join(f'SELECT max(CAST("{c}" AS TIMESTAMP)) AS t FROM {t}' for t, c in ACTUAL_DATES)
    as_of = _scalar(con, f"SELECT max(t) FROM ({union})")
    row = con.execute("SELECT import_id, table_name, file_name, imported_at FROM import_log "
                      "ORDER BY import_id DESC LIMIT 1").fetchall()
    last = LastImport(int(row[0][0]), row[0][1], row[0][2], row[0][3]) if row else None
    imports = int(_scalar(con, "SELECT count(*) FROM import_log"))
    return Summary(counts, ranges, last, as_of, imports)


def levels(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Region levels present in the store, in schema order."""
    present = {r[0] for r in con.execute("SELECT DISTINCT level FROM regions").fetchall()}
    return [lv for lv in schema.LEVELS if lv in present]


def _membership(point_cell: str) -> str:
    """SQL join condition: the point's cell lies in region cell set `rc`."""
    return f"rc.cell = {cells.parent_sql(point_cell, cells.REGION_RES)}"


def region_table(con: duckdb.DuckDBPyConnection, level: str = "state") -> pd.DataFrame:
    """Per region of `level`: population, sites, upgrades (not cancelled) and how many are on air,
    transport links (by end A), complaints and complaints per 10,000 inhabitants."""
    sql = f"""
    WITH rc AS (
        SELECT c.region_id, c.cell FROM region_cells c JOIN regions r USING (region_id) WHERE r.level = $level
    ),
    site_region AS (
        SELECT rc.region_id, s.site_id FROM sites s JOIN rc ON {_membership("s.cell")}
    ),
    n_sites AS (SELECT region_id, count(*) AS n FROM site_region GROUP BY region_id),
    n_upgrades AS (
        SELECT sr.region_id, count(*) AS n, count(u.on_air_actual) AS on_air
        FROM upgrades u JOIN site_region sr USING (site_id)
        WHERE u.status IS DISTINCT FROM 'cancelled'
        GROUP BY sr.region_id
    ),
    n_links AS (
        SELECT rc.region_id, count(*) AS n FROM transport_links l JOIN rc ON {_membership("l.a_cell")}
        GROUP BY rc.region_id
    ),
    n_complaints AS (
        SELECT rc.region_id, count(*) AS n FROM complaints k JOIN rc ON {_membership("k.cell")}
        GROUP BY rc.region_id
    )
    SELECT r.region_id, r.name, r.population,
        coalesce(s.n, 0) AS sites,
        coalesce(u.n, 0) AS upgrades,
        coalesce(u.on_air, 0) AS upgrades_on_air,
        CASE WHEN u.n > 0 THEN 100.0 * u.on_air / u.n END AS pct_on_air,
        coalesce(l.n, 0) AS transport_links,
        coalesce(k.n, 0) AS complaints,
        CASE WHEN r.population > 0 THEN {PER_INHABITANTS}.0 * coalesce(k.n, 0) / r.population END
            AS complaints_per_10k
    FROM regions r
    LEFT JOIN n_sites s USING (region_id)
    LEFT JOIN n_upgrades u USING (region_id)
    LEFT JOIN n_links l USING (region_id)
    LEFT JOIN n_complaints k USING (region_id)
    WHERE r.level = $level
    ORDER BY r.name, r.region_id
    """
    df = con.execute(sql, {"level": level}).df()
    for col in ("sites", "upgrades", "upgrades_on_air", "transport_links", "complaints"):
        df[col] = df[col].astype("int64")
    df["population"] = df["population"].astype("Int64")
    df["pct_on_air"] = df["pct_on_air"].astype("float64")
    df["complaints_per_10k"] = df["complaints_per_10k"].astype("float64")
    return df[REGION_COLUMNS]
