"""The ASGI app bench/load.py serves in several processes: `serve:app` of the checkout in the current folder
(this one or a baseline's), with `runner.postScriptGC` as bench/load.py asks ($NETZAUSBAU_LOAD_GC), so that
every checkout is served by the same uvicorn command with the same settings."""

import os

from streamlit import config

from serve import app  # noqa: F401 - what uvicorn serves

config.set_option("runner.postScriptGC", os.environ.get("NETZAUSBAU_LOAD_GC", "false") == "true", "bench/load.py")
