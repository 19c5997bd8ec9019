"""Every input's columns, types, required fields and allowed values, in one place.

The importer, its error messages, the store's tables and the README's data-format
section are all generated from the definitions here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Field types
TEXT = "text"
INT = "int"
FLOAT = "float"
DATE = "date"
TIMESTAMP = "timestamp"
LAT = "lat"
LON = "lon"
CELL = "cell"
CHOICE = "choice"
GEOMETRY = "geometry"

SQL_TYPES = {
    TEXT: "VARCHAR",
    INT: "BIGINT",
    FLOAT: "DOUBLE PRECISION",
    DATE: "DATE",
    TIMESTAMP: "TIMESTAMP",
    LAT: "DOUBLE PRECISION",
    LON: "DOUBLE PRECISION",
    CELL: "BIGINT",
    CHOICE: "VARCHAR",
    GEOMETRY: "VARCHAR",
}

# The country the network is in: coordinates outside this box are rejected.
COUNTRY_NAME = "Germany"
COUNTRY_BBOX = (47.2, 5.8, 55.1, 15.1)  # south, west, north, east (degrees)


@dataclass(frozen=True)
class Field:
    """One input column."""

    name: str
    type: str
    required: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    # accepted spellings of a choice value (lower-case) -> the canonical value
    value_aliases: dict[str, str] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Table:
    """One input table: its fields, key and how its records are placed."""

    name: str
    key: str
    fields: tuple[Field, ...]
    doc: str
    versioned: bool = False  # keep every imported version (plans: baseline vs current)
    references: tuple[tuple[str, str, str], ...] = ()  # (field, table, table key)
    date_order: tuple[tuple[str, ...], ...] = ()  # fields that must not go backwards
    geojson: str = ""  # GeoJSON geometry type accepted ("Polygon", "LineString")

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


def _choices(*pairs: tuple[str, tuple[str, ...]]) -> tuple[tuple[str, ...], dict[str, str]]:
    values = tuple(v for v, _ in pairs)
    aliases = {}
    for value, spellings in pairs:
        for s in (value, value.replace("_", " "), value.replace("_", "-"), *spellings):
            aliases[s.lower()] = value
    return values, aliases


LEVELS, LEVEL_ALIASES = _choices(
    ("state", ("bundesland", "land")),
    ("district", ("kreis", "landkreis", "bezirk")),
    ("cluster", ("stadtcluster", "city cluster")),
)
TECHNOLOGIES, TECHNOLOGY_ALIASES = _choices(
    ("2G", ("gsm",)), ("3G", ("umts",)), ("4G", ("lte",)), ("4G+5G", ("lte+5g", "4g/5g", "lte/nr")),
    ("5G", ("nr", "5g sa")),
)
SITE_TYPES, SITE_TYPE_ALIASES = _choices(
    ("macro", ("makro", "dach", "mast")), ("micro", ("mikro",)), ("small_cell", ("kleinzelle",)),
)
UPGRADE_KINDS, UPGRADE_KIND_ALIASES = _choices(
    ("hardware_swap", ("hardwaretausch", "swap", "modernisierung")),
    ("new_carrier", ("neuer träger", "carrier", "frequenz")),
    ("5g", ("5g-ausbau", "5g upgrade", "nr")),
    ("new_site", ("neuer standort", "neubau")),
)
UPGRADE_STATUSES, UPGRADE_STATUS_ALIASES = _choices(
    ("planned", ("geplant",)), ("permit", ("genehmigung", "permitted")),
    ("installed", ("installiert", "montiert")), ("on_air", ("on air", "live", "in betrieb")),
    ("cancelled", ("storniert", "abgesagt", "canceled")),
)
LINK_KINDS, LINK_KIND_ALIASES = _choices(
    ("fibre", ("fiber", "glasfaser")), ("microwave", ("richtfunk", "mw")),
    ("leased_line", ("mietleitung", "leased")),
)
CATEGORIES, CATEGORY_ALIASES = _choices(
    ("no_signal", ("kein netz", "kein empfang", "no coverage", "funkloch")),
    ("slow_data", ("langsames internet", "langsam", "slow internet", "capacity")),
    ("dropped_calls", ("gesprächsabbruch", "gespraechsabbruch", "abbrüche", "call drop")),
    ("no_indoor", ("kein empfang im haus", "indoor")),
    ("other", ("sonstiges",)),
)
CHANNELS, CHANNEL_ALIASES = _choices(
    ("crowd_list", ("crowd", "liste", "kampagne", "campaign")),
    ("hotline", ("telefon", "phone", "call center")),
    ("app", ("web", "online", "website")),
    ("social", ("social media", "twitter", "facebook", "x")),
)

# Complaint categories that need more capacity, as opposed to more coverage.
CAPACITY_CATEGORIES = ("slow_data", "dropped_calls")
COVERAGE_CATEGORIES = ("no_signal", "no_indoor")

_LAT = dict(min=COUNTRY_BBOX[0], max=COUNTRY_BBOX[2])
_LON = dict(min=COUNTRY_BBOX[1], max=COUNTRY_BBOX[3])
_LAT_ALIASES = ("latitude", "breite", "breitengrad", "y")
_LON_ALIASES = ("lng", "long", "longitude", "laenge", "länge", "laengengrad", "längengrad", "x")

REGIONS = Table(
    name="regions",
    key="region_id",
    doc="Areas that progress is reported for: states, districts, city clusters. "
    "Each polygon becomes a set of H3 cells once, at import.",
    geojson="Polygon",
    fields=(
        Field("region_id", TEXT, True, "Unique id, e.g. an official key (AGS).", aliases=("id", "ags")),
        Field("name", TEXT, True, "Display name.", aliases=("region", "gebiet")),
        Field("level", CHOICE, True, "Kind of area.", LEVELS, aliases=("ebene",), value_aliases=LEVEL_ALIASES),
        Field("parent_id", TEXT, False, "region_id of the enclosing region.", aliases=("parent",)),
        Field("population", INT, False, "Inhabitants.", aliases=("einwohner", "bevoelkerung"), min=0),
        Field("geometry", GEOMETRY, True,
              "Polygon or MultiPolygon: the feature geometry in GeoJSON, or WKT / GeoJSON text in a table.",
              aliases=("wkt", "geom", "polygon")),
    ),
)

SITES = Table(
    name="sites",
    key="site_id",
    doc="Base-station sites (existing ones; new sites come as upgrades of kind new_site).",
    fields=(
        Field("site_id", TEXT, True, "Unique id.", aliases=("id", "standort_id", "standort")),
        Field("name", TEXT, False, "Display name.", aliases=("bezeichnung",)),
        Field("lat", LAT, True, f"Latitude, WGS84 degrees, inside {COUNTRY_NAME}.", aliases=_LAT_ALIASES, **_LAT),
        Field("lon", LON, True, f"Longitude, WGS84 degrees, inside {COUNTRY_NAME}.", aliases=_LON_ALIASES, **_LON),
        Field("region_id", TEXT, False, "Region as given by the source; the map uses the H3 cells.",
              aliases=("region",)),
        Field("site_type", CHOICE, False, "Sets the coverage radius.", SITE_TYPES, aliases=("typ", "type"),
              value_aliases=SITE_TYPE_ALIASES),
        Field("technology", CHOICE, False, "Radio technology on air now.", TECHNOLOGIES,
              aliases=("technologie", "tech"), value_aliases=TECHNOLOGY_ALIASES),
        Field("transport_link_id", TEXT, False, "The transport link (backhaul) the site hangs on.",
              aliases=("link_id", "backhaul")),
        Field("capacity_mbps", FLOAT, False, "Capacity now, Mbit/s: when given, a place's traffic is shared among "
              "its serving sites by capacity / distance squared.", aliases=("kapazitaet", "capacity"), min=0),
        Field("azimuth_deg", FLOAT, False, "Main direction of the site's sector antenna, degrees clockwise from "
              "north (empty: the site serves all round).", aliases=("azimuth", "azimut"), min=0, max=360),
        Field("beamwidth_deg", FLOAT, False, "Width of that sector, degrees (empty: 120).",
              aliases=("beamwidth", "keulenbreite"), min=1, max=360),
    ),
)

TRANSPORT_LINKS = Table(
    name="transport_links",
    key="link_id",
    doc="Transport network (backhaul) links and their expansion plans. Endpoints as "
    "coordinates, or a LineString geometry in GeoJSON.",
    versioned=True,
    geojson="LineString",
    date_order=(("completion_planned",), ("completion_actual",)),
    fields=(
        Field("link_id", TEXT, True, "Unique id.", aliases=("id", "transport_link_id")),
        Field("kind", CHOICE, True, "Transmission medium.", LINK_KINDS, aliases=("art", "typ"),
              value_aliases=LINK_KIND_ALIASES),
        Field("a_lat", LAT, False, "Latitude of end A (required unless a geometry is given).", **_LAT),
        Field("a_lon", LON, False, "Longitude of end A.", **_LON),
        Field("b_lat", LAT, False, "Latitude of end B.", **_LAT),
        Field("b_lon", LON, False, "Longitude of end B.", **_LON),
        Field("geometry", GEOMETRY, False, "LineString path (GeoJSON feature geometry, or WKT / GeoJSON text).",
              aliases=("wkt", "path")),
        Field("capacity_before_mbps", FLOAT, False, "Capacity now, Mbit/s.", min=0),
        Field("capacity_after_mbps", FLOAT, False, "Capacity after the expansion, Mbit/s.", min=0),
        Field("completion_planned", DATE, False, "Planned completion of the expansion (empty: none planned).",
              aliases=("fertigstellung_geplant", "planned")),
        Field("completion_actual", DATE, False, "Actual completion (empty: not done).",
              aliases=("fertigstellung_ist", "actual")),
        Field("owner", TEXT, False, "Responsible team or contractor.", aliases=("verantwortlich",)),
    ),
)

UPGRADES = Table(
    name="upgrades",
    key="upgrade_id",
    doc="The expansion programme: one row per upgrade of a site, with milestone dates "
    "planned and actual. Re-importing a newer export updates by id and keeps the "
    "earlier versions (the first is the baseline).",
    versioned=True,
    references=(("site_id", "sites", "site_id"), ("transport_link_id", "transport_links", "link_id")),
    date_order=(
        ("permit_planned", "installed_planned", "on_air_planned"),
        ("permit_actual", "installed_actual", "on_air_actual"),
    ),
    fields=(
        Field("upgrade_id", TEXT, True, "Unique id.", aliases=("id", "massnahme_id")),
        Field("site_id", TEXT, True, "The site upgraded; must already be in the store.", aliases=("standort_id",)),
        Field("kind", CHOICE, True, "What is done.", UPGRADE_KINDS, aliases=("art", "massnahme"),
              value_aliases=UPGRADE_KIND_ALIASES),
        Field("permit_planned", DATE, False, "Permit planned."),
        Field("permit_actual", DATE, False, "Permit granted."),
        Field("installed_planned", DATE, False, "Installation planned."),
        Field("installed_actual", DATE, False, "Installation done."),
        Field("on_air_planned", DATE, True, "On air planned.", aliases=("on_air_plan", "inbetriebnahme_geplant")),
        Field("on_air_actual", DATE, False, "On air (empty: not yet).", aliases=("inbetriebnahme_ist",)),
        Field("capacity_before_mbps", FLOAT, False, "Site capacity before, Mbit/s.", min=0),
        Field("capacity_after_mbps", FLOAT, False, "Site capacity after, Mbit/s.", min=0),
        Field("transport_link_id", TEXT, False,
              "Transport link whose expansion this upgrade waits on (empty: none); must be in the store.",
              aliases=("waits_on_link",)),
        Field("status", CHOICE, False, "Status as the source states it (derived from the dates when empty).",
              UPGRADE_STATUSES, value_aliases=UPGRADE_STATUS_ALIASES),
        Field("owner", TEXT, False, "Responsible team or contractor.", aliases=("verantwortlich",)),
    ),
)

COMPLAINTS = Table(
    name="complaints",
    key="complaint_id",
    doc="Customer complaints from every channel. A location is either lat/lon or an "
    "H3 cell (address-free). Complaint text is internal and never published.",
    fields=(
        Field("complaint_id", TEXT, True, "Unique id.", aliases=("id", "ticket", "ticket_id")),
        Field("received_at", TIMESTAMP, True, "When it was received.", aliases=("datum", "date", "eingang")),
        Field("lat", LAT, False, "Latitude (or give cell).", aliases=_LAT_ALIASES, **_LAT),
        Field("lon", LON, False, "Longitude (or give cell).", aliases=_LON_ALIASES, **_LON),
        Field("cell", CELL, False, "H3 cell id (hex or integer, resolution 9 or finer) instead of lat/lon.",
              aliases=("h3", "h3_cell")),
        Field("category", CHOICE, True, "What fails.", CATEGORIES, aliases=("kategorie", "problem"),
              value_aliases=CATEGORY_ALIASES),
        Field("channel", CHOICE, True, "Where it came in.", CHANNELS, aliases=("kanal", "quelle", "source"),
              value_aliases=CHANNEL_ALIASES),
        Field("text", TEXT, False, "Free text (internal only).", aliases=("beschreibung", "description", "comment")),
    ),
)

NOTE_LANGUAGES, NOTE_LANGUAGE_ALIASES = _choices(("de", ("deutsch", "german")), ("en", ("englisch", "english")))

STATUS_NOTES = Table(
    name="status_notes",
    key="note_id",
    doc="Dated status notes per region written by the operator for the public page "
    "(\"Berlin: new-generation hardware at 40 sites, transport expansion in Q3\"). "
    "The note text is published as written; complaint text never is.",
    references=(("region_id", "regions", "region_id"),),
    fields=(
        Field("note_id", TEXT, True, "Unique id.", aliases=("id", "notiz_id")),
        Field("region_id", TEXT, True, "The region the note is about; must already be in the store.",
              aliases=("region",)),
        Field("published_on", DATE, True, "Date of the note.", aliases=("datum", "date")),
        Field("text", TEXT, True, "The note, as the public reads it.", aliases=("notiz", "note", "meldung")),
        Field("language", CHOICE, False, "Language of the text (empty: German).", NOTE_LANGUAGES,
              aliases=("sprache", "lang"), value_aliases=NOTE_LANGUAGE_ALIASES),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (REGIONS, SITES, TRANSPORT_LINKS, UPGRADES, COMPLAINTS,
                                                STATUS_NOTES)}
"""Input tables in the order they must be imported (later ones reference earlier ones)."""

# Columns the store adds to every input table.
DERIVED_COLUMNS = {
    "cell": "H3 cell (resolution 9) of the record's location",
    "import_id": "the import that last wrote the record",
}


def _type_doc(f: Field) -> str:
    if f.type == CHOICE:
        return "one of " + ", ".join(f"`{c}`" for c in f.choices)
    if f.type in (DATE, TIMESTAMP):
        return {"date": "date", "timestamp": "date and time"}[f.type] + " (ISO or DD.MM.YYYY[ HH:MM])"
    if f.type in (LAT, LON):
        return f"number {f.min} to {f.max}"
    return {TEXT: "text", INT: "whole number", FLOAT: "number", CELL: "H3 cell", GEOMETRY: "geometry"}[f.type]


def format_markdown() -> str:
    """The input formats in markdown (the Data page and docs/data-formats.md), generated from the definitions above."""
    out = [
        "Files: CSV (comma or semicolon; UTF-8 with or without BOM, or Windows-1252, where a row holding "
        "one of the five bytes it leaves undefined is rejected; "
        "decimal point or decimal comma, with or without thousands separators: where a number such as "
        "1.234 could be read either way, the column's other numbers decide, else the delimiter: a decimal "
        "comma in semicolon files), Excel (.xlsx, first sheet), Parquet, and GeoJSON "
        "for regions (polygons) and transport links (lines). Column names are matched "
        "case-insensitively, also by the aliases listed; unknown columns are ignored and "
        "reported. Choice values also accept the German spellings listed in `lib/ingest/schema.py`. "
        f"Coordinates must lie in {COUNTRY_NAME} (lat {COUNTRY_BBOX[0]} to {COUNTRY_BBOX[2]}, "
        f"lon {COUNTRY_BBOX[1]} to {COUNTRY_BBOX[3]}). Times are German local time; an ISO time with a "
        "UTC offset or Z is converted to it. Row numbers in messages count the "
        "header as row 1, as a spreadsheet does. Import the tables in this order:",
        "",
    ]
    for t in TABLES.values():
        out += [f"#### {t.name} (key `{t.key}`)", "", t.doc, "",
                "| column | required | type | meaning | also accepted as |", "|---|---|---|---|---|"]
        for f in t.fields:
            aliases = ", ".join(f"`{a}`" for a in f.aliases)
            out.append(f"| `{f.name}` | {'yes' if f.required else ''} | {_type_doc(f)} | {f.doc} | {aliases} |")
        rules = []
        for fld, ref, _ in t.references:
            rules.append(f"`{fld}` must exist in `{ref}`")
        for order in t.date_order:
            if len(order) > 1:
                rules.append(" <= ".join(f"`{o}`" for o in order))
        if t.name == "complaints":
            rules.append("either `lat` and `lon`, or `cell`")
        if t.name == "transport_links":
            rules.append("either all of `a_lat`, `a_lon`, `b_lat`, `b_lon`, or `geometry`")
        if any(f.type == DATE and f.name.endswith("_actual") for f in t.fields):
            rules.append("actual dates may not lie in the future")
        if rules:
            out += ["", "Rules: " + "; ".join(rules) + "."]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def document() -> str:
    """docs/data-formats.md: the input formats as a document of their own."""
    return ("# Data formats\n\n<!-- generated from lib/ingest/schema.py by `make docs` "
            "(python -m lib.ingest.schema); tests/test_ingest.py fails when stale -->\n\n"
            + format_markdown().strip().replace("\n#### ", "\n## ")
            + "\n")


if __name__ == "__main__":
    print(document(), end="")
