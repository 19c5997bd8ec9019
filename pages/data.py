"""Data: import files into the store, see every rejected row and the import history."""

import streamlit as st

from lib import cache, schema

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
st.title("Data")
st.caption("Each file is imported in one transaction: a file that cannot be read changes nothing, and every "
           "rejected row is kept with its reason. Files uploaded together are imported in table order "
           "(regions, sites, transport links, upgrades, complaints).")

files = st.file_uploader("Files to import", type=["csv", "xlsx", "parquet", "geojson", "json"],
                         accept_multiple_files=True, key=f"upload_{st.session_state.get('uploads', 0)}")
table = st.selectbox("Table", [AUTO, *schema.TABLES], key="import_table",
                     help="Which table the files hold; by default it is detected from their column names.")
if st.button("Import", type="primary", icon=":material/upload:", disabled=not files, key="import"):
    con = cache.get_store(create=True)
    with st.status(f"Importing {len(files)} file(s)...", expanded=True):
        bar = st.progress(0.0)
        outcomes = cache.import_files(con, [(f.name, f.getvalue()) for f in files], None if table == AUTO else table,
                                      progress=lambda msg, frac: bar.progress(frac, text=msg))
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

with st.expander("Data formats", icon=":material/description:"):
    st.markdown(schema.format_markdown())

st.subheader("Import history")
log = cache.import_log(con) if con is not None else None
if log is None or log.empty:
    st.info("No imports yet.")
    st.stop()
st.dataframe(log[list(LOG_COLUMNS)], hide_index=True, column_config=LOG_COLUMNS)

with_rejects = log[log["rows_rejected"] > 0]
if with_rejects.empty:
    st.caption("No import had rejected rows.")
    st.stop()
labels = {int(r.import_id): f"#{r.import_id} {r.file_name} ({r.table_name}): {r.rows_rejected:,} rejected"
          for r in with_rejects.itertuples()}
chosen = st.selectbox("Rejected rows of import", list(labels), format_func=labels.get, key="rejects_of")
show_rejects(con, chosen, key="past")
