"""The public page's words in German (the default) and English; the language lives in the URL (?lang=en)."""

from __future__ import annotations

import re
from types import MappingProxyType

LANGUAGES = ("de", "en")
DEFAULT = "de"
NAMES = MappingProxyType({"de": "Deutsch", "en": "English"})

TEXTS = MappingProxyType({
    "title": ("Netzausbau in Ihrer Region", "Network expansion in your region"),
    "intro": ("Wie weit ist der Ausbau des Mobilfunknetzes? Wählen Sie Ihre Region oder suchen Sie Ihren Ort.",
              "How far has the mobile network expansion come? Pick your region or find your town."),
    "language": ("Sprache", "Language"),
    "region": ("Region", "Region"),
    "region_help": ("Wählen Sie ein Bundesland: Seine Kreise stehen dann darunter in der Liste.",
                    "Choose a state: its districts are then listed below it."),
    "place": ("Ort suchen", "Find a place"),
    "place_hint": ("Ortsname eingeben", "Type a place name"),
    "place_in": ("{place} liegt in: {regions}.", "{place} lies in: {regions}."),
    "as_of": ("Datenstand {date}. Angezeigt werden nur Zahlen, hinter denen mindestens {k} Beschwerden stehen; "
              "Beschwerdezahlen sind auf Zehner gerundet.",
              "Data as of {date}. Only figures that stand for at least {k} complaints are shown; complaint counts "
              "are rounded to tens."),
    "pct_done": ("Modernisierungen abgeschlossen", "Upgrades done"),
    "done_of": ("{done:,} von {total:,}", "{done:,} of {total:,}"),
    "late": ("Verspätet", "Late"),
    "late_help": ("Geplanter Termin verstrichen, noch nicht in Betrieb", "Planned date passed, not on air yet"),
    "no_upgrades": ("In dieser Region ist keine Modernisierung geplant.", "No upgrade is planned in this region."),
    "planned_title": ("Was noch aussteht: verspätet und geplant je Quartal",
                      "Still to come: late, and planned per quarter"),
    "later": ("später", "later"),
    "late_bar": ("verspätet", "late"),
    "forecast_line": ("Prognose: {month}", "forecast: {month}"),
    "forecast": ("Prognose: alle in Betrieb", "Forecast: all on air"),
    "forecast_help": ("Wenn es im Tempo der letzten 90 Tage weitergeht. Spanne (90 %): {low} bis {high}.",
                      "If the pace of the last 90 days holds. Range (90 %): {low} to {high}."),
    "no_forecast": ("keine", "none"),
    "no_forecast_help": ("Alle Modernisierungen sind in Betrieb, oder in den letzten 90 Tagen ging keine in "
                         "Betrieb.", "Every upgrade is on air, or none went on air in the last 90 days."),
    "upgrades": ("Modernisierungen", "Upgrades"),
    "map_title": ("Gebiete mit vielen Beschwerden", "Areas with many complaints"),
    "map_caption": ("Gebiete von etwa 5 km² (Sechsecke; Punkte, wo die Karte ein Land oder mehr zeigt) mit "
                    "mindestens {k} Beschwerden; die Farbe zeigt den Stand der Abhilfe.",
                    "Areas of about 5 km² (hexagons; dots where the map shows a state or more) with at least {k} "
                    "complaints; the colour shows the state of relief."),
    "map_districts": ("Die dünnen Linien trennen die Kreise.", "The thin lines part the districts."),
    "no_areas": ("Hier gibt es kein Gebiet mit mindestens {k} Beschwerden.",
                 "There is no area with at least {k} complaints here."),
    "about": ("etwa {n:,} Beschwerden", "about {n:,} complaints"),
    "map_table_status": ("Stand der Abhilfe", "State of relief"),
    "map_table_areas": ("Gebiete", "Areas"),
    "map_table_complaints": ("Beschwerden (gerundet)", "Complaints (rounded)"),
    "expected": ("Abhilfe erwartet {q}", "relief expected {q}"),
    "trend_title": ("Beschwerden je Monat", "Complaints per month"),
    "trend_caption": ("Auf Zehner gerundet; Monate mit weniger als {k} Beschwerden bleiben leer.",
                      "Rounded to tens; months with fewer than {k} complaints are left empty."),
    "complaints": ("Beschwerden", "Complaints"),
    "below_k": ("weniger als {k}", "fewer than {k}"),
    "notes_title": ("Meldungen des Netzbetreibers", "Notes from the operator"),
    "no_notes": ("Noch keine Meldung für diese Region.", "No note for this region yet."),
    "open_data": ("Offene Daten", "Open data"),
    "open_data_caption": ("Der ganze veröffentlichte Datenstand, frei zur Weiterverwendung. Auch als JSON unter "
                          "`/api/public/snapshot.json`.",
                          "The whole published snapshot, free to reuse. Also as JSON at "
                          "`/api/public/snapshot.json`."),
    "download_csv": ("CSV (ZIP)", "CSV (ZIP)"),
    "download_geojson": ("GeoJSON", "GeoJSON"),
    "download_json": ("JSON", "JSON"),
    "no_snapshot": ("Es ist noch kein Datenstand veröffentlicht.", "No snapshot has been published yet."),
    "bad_param": ("Der Link enthält einen unbekannten Wert für „{name}“ ({value}); gezeigt wird {default}.",
                  "The link holds an unknown value for \"{name}\" ({value}); showing {default} instead."),
    "network": ("Deutschland (ganzes Netz)", "Germany (whole network)"),
    "level_state": ("Bundesland", "state"),
    "level_district": ("Kreis", "district"),
    "level_cluster": ("Stadtgebiet", "city area"),
    "status_relieved": ("Abhilfe geschaffen", "relieved"),
    "status_in_progress": ("in Arbeit", "in progress"),
    "status_planned": ("geplant", "planned"),
    "status_no_plan": ("noch kein Plan", "no plan yet"),
})
"""Key -> (German, English)."""


def language(value) -> tuple[str, bool]:
    """The language for a URL value and whether the value was bad (None: the default, not bad)."""
    if value is None or value == "":
        return DEFAULT, False
    value = str(value).strip().lower()
    return (value, False) if value in LANGUAGES else (DEFAULT, True)


def t(key: str, lang: str, **values) -> str:
    """The text `key` in `lang`, formatted with `values` (German number grouping in German). Text from a link,
    a typed place or the data goes in through `plain` where the text is shown as markdown."""
    text = TEXTS[key][LANGUAGES.index(lang)]
    if not values:
        return text
    return _german_digits(text, values) if lang == "de" else text.format(**values)


MARKDOWN_SPECIALS = "\\`*_{}[]()#+-.!|<>~$:&"
"""Characters markdown (and its links, HTML and maths) gives a meaning to."""


ZWSP = "\u200b"
"""A zero-width space: put where a bare web or mail address begins, it keeps markdown from making a link of it."""


def escaped(text: str) -> str:
    """`text` with every markdown special character escaped (no link syntax, emphasis or HTML)."""
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in str(text))


def plain(text: str) -> str:
    """`text` as written, for a markdown line: `escaped`, and web and mail addresses broken by a zero-width
    space (GitHub markdown links bare addresses)."""
    out = escaped(text)
    out = out.replace("\\://", "\\:" + ZWSP + "//")
    out = re.sub(r"(?i)(www)(?=\\\.)", "\\1" + ZWSP, out)
    return out.replace("@", "@" + ZWSP)


def _german_digits(text: str, values: dict) -> str:
    """Format `text` with whole numbers written as German writes them (`number`)."""
    swapped = {k: (number(v, "de") if isinstance(v, int) and not isinstance(v, bool) else v)
               for k, v in values.items()}
    return text.replace(":,}", "}").format(**swapped)


SEPARATORS = {"de": ",.", "en": ".,"}
"""The decimal mark and the thousands separator of each language (as a Plotly chart's `separators` takes them)."""


def number(value: float, lang: str, decimals: int = 0) -> str:
    """A number as `lang` writes it (German: 1.234,5; English: 1,234.5)."""
    decimal, thousands = SEPARATORS[lang]
    return f"{value:,.{decimals}f}".translate(str.maketrans(",.", thousands + decimal))


MONTHS_DE = ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez.")


def month(value, lang: str) -> str:
    """A date's month as `lang` writes it (German: Okt. 2027; English: Oct 2027)."""
    import datetime as dt

    d = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return f"{MONTHS_DE[d.month - 1]} {d.year}" if lang == "de" else d.strftime("%b %Y")


def date(value, lang: str) -> str:
    """A date as `lang` writes it (German: 01.11.2026; English: 2026-11-01)."""
    import datetime as dt

    d = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return d.strftime("%d.%m.%Y" if lang == "de" else "%Y-%m-%d")
