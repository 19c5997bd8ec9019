"""The Planner map in headless Chromium: a drawn map and legend, the date slider, selecting a hotspot.

Runs offline, and the page asks no other host for anything (no basemap unless NETZAUSBAU_BASEMAP_URL is set,
no icon font): the layers draw on a plain background. Screenshots go to
/tmp/shots/map*.png for a person to look at.
"""

from __future__ import annotations

import io
import re

from PIL import Image
from playwright.sync_api import expect

from tests.browser import SHOTS, assert_no_errors, settle

CHART = "[data-testid='stDeckGlJsonChart']"


def open_map(page, server, query: str = ""):
    page.goto(f"{server}/map{query}")
    page.wait_for_selector(CHART)
    settle(page)
    page.wait_for_timeout(2000)  # deck.gl draws after the element mounts
    return page.locator(CHART)


def colours(locator) -> int:
    """Distinct colours in a screenshot of the element (a blank canvas has one or two)."""
    img = Image.open(io.BytesIO(locator.screenshot())).convert("RGB")
    return len(img.getcolors(1 << 24))


def test_the_map_draws_its_layers_and_legend_without_a_basemap(server, page):
    chart = open_map(page, server)
    assert page.blocked == []  # no request to another host: no basemap, no fonts, no icons
    assert colours(chart.locator("canvas").first) > 20  # hexagons, points, lines and outlines in many colours
    legend = page.locator(".st-key-map_legend")
    expect(legend).to_be_visible()
    for text in ("Hotspots by relief", "blocked by transport", "Sites by upgrade status", "Transport links"):
        expect(legend).to_contain_text(text)
    expect(page.get_by_role("heading", name="Planner map")).to_be_visible()
    assert_no_errors(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "map.png"), full_page=True)


def test_moving_the_date_redraws_and_goes_into_the_url(server, page):
    open_map(page, server)
    caption = page.get_by_text(re.compile(r"Gi\* over the 90 days up to"))
    expect(caption).to_contain_text("up to 2026-11-01")
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(31):
        slider.press("ArrowLeft")
    page.wait_for_url(re.compile(r"date=2026-10-01"))
    settle(page)
    expect(caption).to_contain_text("up to 2026-10-01")
    play = page.locator(".st-key-map_play input")
    page.get_by_text("Play", exact=True).click()  # steps a month: to the last day, where it stops
    expect(caption).to_contain_text("up to 2026-11-01", timeout=30_000)
    settle(page)
    expect(play).not_to_be_checked()
    expect(page).not_to_have_url(re.compile("date="))  # the default date is left out of the link
    assert_no_errors(page)


def test_clicking_a_hotspot_shows_its_story(server, page):
    """A row of the ranked table selects a hotspot and centres the map on it; after clearing, a click on the
    map's centre selects it again."""
    chart = open_map(page, server)
    table = page.locator(".st-key-map_table [data-testid='stDataFrame']")
    place = table.locator("td[role='gridcell']").nth(1).inner_text().strip()  # rank, then the nearest town
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 52)  # the first row's selection checkbox
    page.wait_for_url(re.compile(r"sel=hotspots%3A[0-9a-f]{15}"))
    first = re.search(r"sel=hotspots%3A([0-9a-f]{15})", page.url).group(1)
    settle(page)
    heading = page.get_by_role("heading", name=f"Hotspot near {place}")  # named by its town, not its H3 id
    expect(heading).to_be_visible()
    expect(page.get_by_text(f"H3 cell {first}")).to_be_visible()
    page.get_by_test_id("stButton").filter(has_text="Clear selection").click()
    settle(page)
    expect(heading).to_have_count(0)  # retried: the rerun may lag

    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(2000)
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(500)  # a hover first, as a person's pointer does
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # press and release together
    page.wait_for_url(re.compile(rf"sel=hotspots%3A{first}"))
    settle(page)
    expect(heading).to_be_visible()
    page.mouse.move(box["x"] + box["width"] / 2 + 1, box["y"] + box["height"] / 2)  # the tooltip, as shown
    tip = page.locator(".deck-tooltip")
    expect(tip).to_contain_text(f"near {place}")
    text = tip.inner_text()
    assert "complaint" in text and "<" not in text and "_" not in text, text
    expect(page.get_by_text("Serving sites and their upgrades")).to_be_visible()
    expect(page.locator("[data-testid='stPlotlyChart']")).to_be_visible()
    assert_no_errors(page)
    page.screenshot(path=str(SHOTS / "map_selected.png"), full_page=True)


def test_a_tooltip_at_the_maps_edge_is_drawn_whole(server, page):
    """A hotspot dragged to the map's right edge: its tooltip reaches past the map and is drawn there, over the
    column beside it (not cut at the edge)."""
    chart = open_map(page, server)
    table = page.locator(".st-key-map_table [data-testid='stDataFrame']")
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 52)  # the first row: the map centres on its hotspot
    page.wait_for_url(re.compile(r"sel=hotspots%3A[0-9a-f]{15}"))
    settle(page)
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(2000)
    box = chart.bounding_box()
    right, y = box["x"] + box["width"], box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(right - 30, y, steps=10)  # pan: the hotspot follows the pointer to the edge
    page.mouse.up()
    page.wait_for_timeout(1000)
    page.mouse.move(right - 29, y)
    tip = page.locator(".deck-tooltip")
    expect(tip).to_contain_text("complaint")
    t = tip.bounding_box()
    assert t["x"] + t["width"] > right + 40, (t, right)  # it reaches past the map's edge
    background = tip.evaluate("e => getComputedStyle(e).backgroundColor")
    rgb = tuple(int(v) for v in re.findall(r"\d+", background)[:3])
    beyond = Image.open(io.BytesIO(page.screenshot(clip={"x": right + 4, "y": t["y"] + 3, "width": 30,
                                                         "height": t["height"] - 6}))).convert("RGB")
    share = sum(n for n, c in beyond.getcolors(1 << 24) if c == rgb) / (beyond.width * beyond.height)
    assert share > 0.5, (background, share)  # past the edge the tooltip is drawn, not the page beside it
    page.screenshot(path=str(SHOTS / "map_tooltip_edge.png"))
    cut = page.eval_on_selector_all("[data-testid='stMetric'] *", "els => els.filter(e => getComputedStyle(e)"
                                    ".textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth).map(e => "
                                    "e.textContent)")
    assert cut == [], cut  # the story's figures and their notes read whole, not cut with an ellipsis


def test_a_shared_link_reproduces_the_view(server, page):
    open_map(page, server, "?date=2026-06-01&kind=coverage&colour=significance&layers=hotspots,regions")
    expect(page.get_by_text("Hotspots by significance")).to_be_visible()
    expect(page.get_by_text(re.compile(r"up to 2026-06-01 \(coverage complaints\)"))).to_be_visible()
    assert "Sites by upgrade status" not in page.locator(".st-key-map_legend").inner_text()
    assert_no_errors(page)
    open_map(page, server, "?date=tomorrow")
    expect(page.get_by_text(re.compile("Link parameter ignored: date='tomorrow'"))).to_be_visible()
    page.screenshot(path=str(SHOTS / "map_bad_link.png"), full_page=True)


def test_the_exports_hold_every_hotspot_of_the_view(server, page):
    """CSV and GeoJSON downloads of the view: one row and one hexagon per hotspot the caption counts."""
    import csv
    import json

    open_map(page, server, "?date=2026-09-01")
    caption = page.get_by_text(re.compile(r"[\d,]+ hotspots in this view")).inner_text()
    n = int(re.search(r"([\d,]+) hotspots in this view", caption).group(1).replace(",", ""))
    with page.expect_download() as got:
        page.get_by_text("Download CSV").click()
    assert got.value.suggested_filename == "hotspots-2026-09-01-DE.csv"
    rows = list(csv.DictReader(open(got.value.path(), encoding="utf-8-sig")))
    with page.expect_download() as got:
        page.get_by_text("Download GeoJSON").click()
    features = json.load(open(got.value.path()))["features"]
    assert len(rows) == len(features) == n > 0
    assert [r["cell"] for r in rows] == [f["properties"]["cell"] for f in features]
    assert all(f["geometry"]["type"] == "Polygon" for f in features)
    assert_no_errors(page)


def test_what_holds_hotspots_back_is_drawn_when_opened(server, page):
    """The expander runs its queries only when opened: closed, its tables are not on the page; a click opens
    it and they come."""
    open_map(page, server)
    expect(page.get_by_text("Transport links", exact=True)).to_have_count(0)
    page.get_by_text("What holds these hotspots back", exact=False).click()
    expect(page.get_by_text("Transport links", exact=True)).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Show what changes")).to_be_visible()
    settle(page)
    assert_no_errors(page)
