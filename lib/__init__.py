"""Netzausbau-Monitor's plain-Python core, in packages that follow the data's flow.

files -> `ingest` (read, validate, H3 cells) -> `store` (one transaction a file) -> `engine` (hotspots,
serving sites, relief, progress, impact, as-of views) -> `views` (what each internal page shows) -> pages.
The public path is apart: `views.publish` writes a snapshot that `public` alone reads. `demo` makes
input files. `cache` (the only module importing streamlit), `warmup` and `cli` are the app's glue;
`cells`, `errors` and `export` serve every layer. tests/test_layers.py holds the layering.
"""
