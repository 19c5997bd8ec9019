"""Every widget of every page puts its value into the link: change it as a person does, the URL follows, and
a reload of that URL shows the same view (every widget's value, and what the page says it shows).

Headless Chromium at the default demo size (the `server` fixture: the demo store). A widget whose value stays
out of the link is listed in `NOT_IN_THE_LINK` with the reason.
"""

from __future__ import annotations

import pytest

from tests.browser import assert_no_errors, settle

NOT_IN_THE_LINK = {
    "map: Play": "a running animation, not a view: the link holds the date it shows",
    "rollout: Compare regions": "a comparison chosen for the moment; the link holds the region",
}

STATE = """() => {
  const out = [];
  const label = el => (el.getAttribute("aria-label") || el.textContent || "").trim();  // hidden ones too
  for (const el of document.querySelectorAll("[aria-checked], [aria-pressed], [aria-selected='true']")) {
    out.push(`${label(el)}=${el.getAttribute("aria-checked") ?? el.getAttribute("aria-pressed") ?? "selected"}`);
  }
  for (const el of document.querySelectorAll("[role='slider']")) {
    out.push(`${label(el)}@${el.getAttribute("aria-valuetext") || el.getAttribute("aria-valuenow")}`);
  }
  for (const el of document.querySelectorAll("input[role='combobox'], input[type='text'], input[type='number']")) {
    out.push(`${el.getAttribute("aria-label")}:${el.value}`);
  }
  for (const el of document.querySelectorAll("[class*='st-key-'] details")) {  // keyed expanders: their state counts
    const title = el.querySelector("summary [data-testid='stMarkdownContainer']").textContent.trim();
    out.push(`expander ${title}=${el.open}`);
  }
  for (const el of document.querySelectorAll("[data-tag]")) out.push(`tag ${el.getAttribute("aria-label")}`);
  for (const el of document.querySelectorAll("[data-testid='stCaptionContainer']")) {
    out.push(`caption ${el.textContent.trim()}`);
  }
  return out;
}"""
"""Everything the page shows of its widgets' values (radios, toggles, pills, sliders, boxes, chosen tags) and its
captions (which say what the map or table shows)."""


LAST = {"/map": "[data-testid='stDeckGlJsonChart']", "/rollout": "text=One-page report",
        "/": "[data-testid='stDataFrame']"}
"""The page's last element: it is drawn whole once this is there and the script has finished."""


def drawn(page, path: str) -> None:
    page.wait_for_selector(LAST[path], state="attached")
    settle(page)


def state(page) -> list[str]:
    return sorted(page.evaluate(STATE))


def radio(name: str):
    return lambda page: page.get_by_role("radio", name=name, exact=True).first.click()


def pick(box: str, option: str):
    def act(page):
        page.get_by_role("combobox", name=box, exact=True).click()
        page.get_by_role("option", name=option, exact=True).click()
        page.keyboard.press("Escape")
    return act


def in_filters(act):
    def run(page):
        page.get_by_text("Filters: channels, upgrades, statuses").click()
        page.wait_for_selector(".st-key-map_ch", state="visible")
        page.wait_for_timeout(500)  # the expander opens
        act(page)
    return run


def toggle(name: str):
    return lambda page: page.get_by_text(name, exact=True).first.click()  # the label, then the caption naming it


def slider_left(name: str):
    def act(page):
        page.get_by_role("slider", name=name).focus()
        page.keyboard.press("ArrowLeft")
    return act


def pill(name: str):
    return lambda page: page.get_by_role("button", name=name, exact=True).click()


def remove_tag(key: str):
    return lambda page: page.locator(f".st-key-{key} button[aria-label^='Remove ']").first.click()


def type_date(name: str, month_day: str):
    def act(page):
        page.get_by_role("spinbutton", name=f"month, {name}").click()
        page.keyboard.type(month_day)
        page.keyboard.press("Enter")
    return act


MAP = [
    ("date slider", slider_left("Network as of"), "date="),
    ("significant only", toggle("Significant only"), "sig=0"),
    ("region", pick("Region", "Bayern (state)"), "region=09"),
    ("complaints", radio("coverage"), "kind=coverage"),
    ("colour", radio("significance"), "colour=significance"),
    ("resolution", pick("H3 res.", "8"), "res=8"),
    ("layers", pill("links"), "layers="),
    ("channels", in_filters(pick("Channels", "app")), "ch=app"),
    ("study area", in_filters(radio("whole country")), "study=country"),
    ("upgrade kinds", in_filters(pick("Upgrade kinds (sites)", "hardware swap")), "uk="),
    ("site status", in_filters(remove_tag("map_ss")), "ss="),
    ("relief status", in_filters(remove_tag("map_rs")), "rs="),
    ("link state", in_filters(remove_tag("map_ls")), "ls="),
]

ROLLOUT = [
    ("level", radio("cluster"), "level=cluster"),
    ("region", pick("Region", "Bayern"), "region=Bayern"),
    ("as of", type_date("As of", "0901"), "as_of="),
    ("burn-up scale", radio("Counts"), "burnup=Counts"),
    ("impact section", lambda page: page.get_by_text("Impact of relief on complaints, and complaints by channel")
     .click(), "impact=true"),
]

OVERVIEW = [("level", radio("cluster"), "level=cluster")]

CASES = ([("/map", *c) for c in MAP] + [("/rollout", *c) for c in ROLLOUT] + [("/", *c) for c in OVERVIEW])


@pytest.mark.parametrize(("path", "widget", "act", "param"), CASES, ids=[f"{p} {w}" for p, w, _, _ in CASES])
def test_a_changed_widget_goes_into_the_link_and_a_reload_shows_the_same_view(server, page, path, widget, act,
                                                                              param):
    page.goto(f"{server}{path}")
    drawn(page, path)
    before = state(page)
    act(page)
    page.wait_for_url(lambda url: param in url.split("?", 1)[-1] if "?" in url else False)
    drawn(page, path)
    page.keyboard.press("Escape")
    shown = state(page)
    assert shown != before, f"{widget}: the page shows nothing new"
    link = page.url
    page.goto(link)  # the shared link opened afresh: a new session
    drawn(page, path)
    assert page.url == link
    reloaded = state(page)
    assert reloaded == shown, f"{widget}: the reloaded link shows another view\n{set(shown) ^ set(reloaded)}"
    assert_no_errors(page)
