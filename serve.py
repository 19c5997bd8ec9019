"""The server entry: the dashboard (dashboard.py) plus the open-data JSON endpoint (lib/public/api.py) as one ASGI app.

    streamlit run serve.py                         # internal dashboard + /api/public/...
    NETZAUSBAU_PUBLIC=1 streamlit run serve.py     # public mode: only the public page + /api/public/...
"""

import streamlit as st

from lib.public import api

app = st.App("dashboard.py", routes=api.ROUTES)
