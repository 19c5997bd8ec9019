"""Small pieces of page behaviour that Streamlit's widgets lack (the pages call these; no data here).

`enter_applies_dates`: a date typed into a date field applies on Enter, as in a form. Streamlit's date
field applies a typed date only when the field loses focus (or on Escape while its calendar is open), so
a person who types a date and presses Enter saw nothing happen. The script below, our own and served
with the page (no request elsewhere), turns Enter inside a date field into Escape and then leaves the
field, which is what applies the date. The dashboard installs it on every internal page (once per
browser tab).
"""

from __future__ import annotations

import streamlit as st

ENTER_APPLIES_DATES = """<script>
(() => {
  if (window.__netzausbauEnterDates) return;
  window.__netzausbauEnterDates = true;
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing) return;
    const field = event.target.closest && event.target.closest("[data-testid='stDateInputField']");
    if (!field) return;
    event.preventDefault();
    const target = event.target;
    target.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape", code: "Escape", bubbles: true}));
    setTimeout(() => { if (field.contains(document.activeElement)) document.activeElement.blur(); }, 0);
  }, true);
})();
</script>"""


def enter_applies_dates() -> None:
    """Make Enter apply a typed date in every date field of this page (see the module's docstring)."""
    st.html(ENTER_APPLIES_DATES, unsafe_allow_javascript=True, width="content")
