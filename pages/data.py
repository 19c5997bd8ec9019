"""Data: import files into the store, see every rejected row, the import history and the audit trail (data
stewards and admins only; admins also change the settings)."""

import datetime as dt

import streamlit as st

import shell
from lib import audit, cache
from lib.errors import NetzausbauError
from lib.ingest import schema
from lib.public import snapshot
from lib.views import publish

AUTO = "detect from columns"
REJECT_COLUMNS = ["row", "field", "value", "reason"]
COUNT = "localized"
LOG_COLUMNS = {
    "import_id": st.column_config.NumberColumn("Import", format="#%d"),
    "imported_at": st.column_config.DatetimeColumn("Imported", format="YYYY-MM-DD HH:mm"),
    "table_name": "Table", "file_name": "File", "format": "Format",
    "rows_total": st.column_config.NumberColumn("Rows", format=COUNT),
    "rows_accepted": st.column_config.NumberColumn("Accepted", format=COUNT),
    "rows_rejected": st.column_config.NumberColumn("Rejected", format=COUNT),
    "rows_new": st.column_config.NumberColumn("New", format=COUNT),
    "rows_updated": st.column_config.NumberColumn("Updated", format=COUNT),
    "rows_unchanged": st.column_config.NumberColumn("Unchanged", format=COUNT),
    "seconds": st.column_config.NumberColumn("Seconds", format="%.1f"),
    "warnings": "Warnings",
    "imported_by": "By",
}


def show_rejects(con, import_id: int, key: str) -> None:
    """The rejected rows of one import, and a CSV download of them."""
    rejects = cache.rejected_rows(con, import_id)
    st.dataframe(rejects[REJECT_COLUMNS], hide_index=True,
                 column_config={"row": st.column_config.NumberColumn("Row", format="%d"), "field": "Field",
                                "value": "Value", "reason": "Reason"})
    st.download_button("Download rejected rows (CSV)", cache.rejects_csv(rejects), mime="text/csv",
                       file_name=f"rejected_{import_id}.csv", icon=":material/download:", on_click="ignore",
                       key=f"{key}_download")


cache.ensure_routed()
user = shell.require("data")
st.title("Data")
st.caption("Each file is imported in one transaction: a file that cannot be read changes nothing, and every "
           "rejected row is kept with its reason. Files uploaded together are imported in table order "
           "(regions, sites, transport links, upgrades, complaints).")

files = st.file_uploader("Files to import", type=["csv", "xlsx", "parquet", "geojson", "json"],
                         accept_multiple_files=True, key=f"upload_{st.session_state.get('uploads', 0)}")
table = st.selectbox("Table", [AUTO, *schema.TABLES], key="import_table",
                     help="Which table the files hold; by default it is detected from their column names.")
if st.button("Import", type="primary", icon=":material/upload:", disabled=not files, key="import"):
    shell.require("import")
    con = cache.get_store(create=True)
    with st.status(f"Importing {len(files)} file(s)...", expanded=True):
        bar = st.progress(0.0)
        outcomes = cache.import_files(con, [(f.name, f.getvalue()) for f in files], None if table == AUTO else table,
                                      progress=lambda msg, frac: bar.progress(frac, text=msg), by=user.who)
    st.session_state["outcomes"] = [o.brief() for o in outcomes]
    st.session_state["uploads"] = st.session_state.get("uploads", 0) + 1  # a fresh, empty uploader
    st.rerun()  # draw everything, the sidebar too, from the new store version

con = cache.get_store()
for o in st.session_state.get("outcomes", []):
    if o["error"]:
        st.error(o["error"], icon=":material/block:")
        continue
    show = st.info if o["import_id"] is None else st.warning if o["rejected"] else st.success
    show(o["summary"])
    for w in o["warnings"]:
        st.caption(f":material/warning: {w}")
    if o["rejected"] and con is not None:
        show_rejects(con, o["import_id"], key=f"new_{o['import_id']}")

def publish_section(con) -> None:
    """The public snapshot: write it from the store, and add a status note for the public page."""
    st.subheader("Public snapshot")
    st.caption(f"The public page and /api/public/snapshot.json read only this file: {snapshot.snapshot_path()}. "
               "It holds aggregates only (see README, Public page); publishing twice from the same store gives the "
               "same file.")
    regions = cache.regions(con) if con is not None else None
    if regions is not None:  # the public page shows the published levels only: a district's note would vanish
        regions = regions[regions["level"].isin(snapshot.LEVELS)]
    if regions is None or regions.empty:
        st.info(f"Import regions ({' or '.join(snapshot.LEVELS)}) first: notes and the snapshot are per region.")
        return
    with st.form("note_form", clear_on_submit=True, border=True):
        st.markdown("**New status note** (published with the next snapshot, newest first)")
        labels = dict(zip(regions["region_id"], regions["name"] + " (" + regions["level"] + ")", strict=True))
        c = st.columns([2, 1, 1])
        region = c[0].selectbox("Region", list(labels), format_func=labels.get, key="note_region")
        day = c[1].date_input("Date", dt.date.today(), key="note_day")
        language = c[2].segmented_control("Language", ["de", "en"], default="de", required=True, key="note_lang")
        text = st.text_area("Note", max_chars=snapshot.MAX_TEXT, key="note_text",
                            placeholder="Berlin: new-generation hardware at 40 sites, transport expansion in Q3")
        if st.form_submit_button("Save note", icon=":material/add_comment:"):
            shell.require("note")
            if not text.strip():
                st.error("The note is empty: nothing was saved.")
            else:
                outcomes = cache.import_files(con, [publish.note_file(region, day, text, language)], "status_notes",
                                              by=user.who)
                st.session_state["outcomes"] = [o.brief() for o in outcomes]
                st.rerun()
    k = cache.public_k(con)
    st.caption(f"Every published figure counts at least k = {k} complaints (an admin's setting, under Settings).")
    if st.button("Publish snapshot", icon=":material/public:", key="publish"):
        shell.require("publish")
        try:
            st.success(cache.publish_snapshot(con, k, by=user.who).summary())
        except NetzausbauError as exc:
            st.error(str(exc), icon=":material/block:")


def settings_section(con) -> None:
    """An admin's settings: the public snapshot's k."""
    st.subheader("Settings")
    with st.form("settings_form", border=True):
        k = st.number_input("k: minimum complaints per published figure", min_value=snapshot.MIN_K,
                            value=cache.public_k(con), step=1, key="setting_k",
                            help="A region, quarter or area with fewer complaints is left out of the public snapshot.")
        if st.form_submit_button("Save settings", icon=":material/save:"):
            shell.require("settings")
            if int(k) != cache.public_k(con):
                cache.set_public_k(con, int(k), by=user.who)
                st.success(f"k is now {int(k)}; the next published snapshot uses it.")


def audit_section(con) -> None:
    """Who imported, noted, published or changed a setting, and when; and its CSV."""
    st.subheader("Audit trail")
    trail = cache.audit_trail(con)
    if trail.empty:
        st.info("Nothing recorded yet: imports, status notes, publishing and settings changes appear here.")
        return
    st.dataframe(audit.readable(trail), hide_index=True, height=min(400, 38 + 35 * len(trail)),
                 column_config={audit.COLUMNS["happened_at"]: st.column_config.DatetimeColumn(
                     format="YYYY-MM-DD HH:mm:ss")})
    st.download_button("Download the audit trail (CSV)", cache.audit_csv(trail), mime="text/csv",
                       file_name="audit_trail.csv", icon=":material/download:", on_click="ignore", key="audit_download")


with st.expander("Data formats", icon=":material/description:"):
    st.markdown(schema.format_markdown())

def history_section(con) -> None:
    """Every import, and the rejected rows of any of them."""
    st.subheader("Import history")
    log = cache.import_log(con) if con is not None else None
    if log is None or log.empty:
        st.info("No imports yet.")
        return
    st.dataframe(log[list(LOG_COLUMNS)], hide_index=True, column_config=LOG_COLUMNS)
    with_rejects = log[log["rows_rejected"] > 0]
    if with_rejects.empty:
        st.caption("No import had rejected rows.")
        return
    labels = {int(r.import_id): f"#{r.import_id} {r.file_name} ({r.table_name}): {r.rows_rejected:,} rejected"
              for r in with_rejects.itertuples()}
    chosen = st.selectbox("Rejected rows of import", list(labels), format_func=labels.get, key="rejects_of")
    show_rejects(con, chosen, key="past")


publish_section(con)
history_section(con)
if con is not None and user.may("audit"):
    audit_section(con)
if con is not None and user.may("settings"):
    settings_section(con)
