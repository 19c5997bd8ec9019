"""The internal dashboard's shell around its pages: sign-in and the page guard, who is signed in, and Enter
in date fields. With lib/cache.py the only Streamlit glue outside pages/; the rules are lib/access.py.

Sign-in uses Streamlit's st.login (OpenID Connect, through Authlib) and is on when .streamlit/secrets.toml
has an `[auth]` section (.streamlit/secrets.example.toml shows Keycloak, Microsoft Entra ID and Google
Workspace). A visitor who is not signed in gets the sign-in page only, a signed-in person without a role
gets only who they are and a sign-out, and every page and action checks the right it needs (`require`) on
the server, whatever the browser sends. Without `[auth]`, everyone is `access.LOCAL` and the dashboard
serves this machine only (`access.refusal`).
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from lib import access
from lib.public import i18n


def configured() -> bool:
    """Whether sign-in is configured: an `[auth]` section in secrets.toml."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def _providers() -> list[str | None]:
    """The named providers of `[auth.<name>]` sections, or [None] for the one provider of `[auth]` itself."""
    auth = st.secrets["auth"]
    named = [name for name, value in auth.items() if isinstance(value, Mapping) and name != "client_kwargs"]
    return named or [None]


def current() -> access.User | None:
    """Who uses this session: `access.LOCAL` without sign-in; the signed-in person with their role; None when
    sign-in is configured and nobody is signed in. Raises `access.AccessConfigError` on a bad `[roles]`."""
    if not configured():
        return access.LOCAL
    if not st.user.is_logged_in:
        return None
    return access.RoleMap.from_config(st.secrets.get("roles")).user(st.user.to_dict())


def sign_in_page() -> None:
    """What a visitor who is not signed in sees: a title and one button per provider."""
    st.title("Netzausbau-Monitor")
    st.write("Sign in to see the network's expansion against what customers report.")
    for provider in _providers():
        label = "Sign in" if provider is None else f"Sign in with {provider.replace('_', ' ').title()}"
        if st.button(label, type="primary", icon=":material/login:", key=f"login_{provider}"):
            st.login(provider) if provider else st.login()


def no_role_page(user: access.User) -> None:
    """What a signed-in person without a role sees."""
    st.title("Netzausbau-Monitor")
    st.warning(f"You are signed in as {i18n.escaped(user.who)}, but have no role for this dashboard. Ask an "
               "administrator to add you to one of its groups.", icon=":material/lock:")
    if st.button("Sign out", icon=":material/logout:", key="logout_norole"):
        st.logout()


def sidebar(user: access.User) -> None:
    """Who is signed in, their role, and sign-out (with sign-in only)."""
    if user is access.LOCAL:
        st.caption("No sign-in: this machine only")
        return
    st.caption(f"Signed in as **{i18n.escaped(user.name or user.email)}** ({user.role_label})")
    if st.button("Sign out", icon=":material/logout:", key="logout", type="tertiary"):
        st.logout()


def require(right: str) -> access.User:
    """The session's user if they may do `right`; otherwise say so and stop the page run (the server never
    runs the rest of the page, whatever the browser asked for)."""
    try:
        user = current()
    except access.AccessConfigError as exc:
        st.error(str(exc), icon=":material/lock:")
        st.stop()
    if user is None or not user.may(right):
        who = "Nobody is signed in" if user is None else f"{i18n.escaped(user.who)} ({user.role_label})"
        st.error(f"{who}: this needs the {access.ROLE_LABELS[access.RIGHTS[right]]} role.", icon=":material/lock:")
        st.stop()
    return user


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
    """Make Enter apply a typed date in every date field of this page: Streamlit's date field applies a typed
    date only when the field loses focus (or on Escape while its calendar is open); this script, our own and
    served with the page (no request elsewhere), turns Enter inside a date field into Escape and then leaves
    the field. Installed once per browser tab."""
    st.html(ENTER_APPLIES_DATES, unsafe_allow_javascript=True, width="content")
