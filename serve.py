"""The server entry: the dashboard (dashboard.py) plus the open-data JSON endpoint (lib/public/api.py) as one ASGI app.

    streamlit run serve.py                         # internal dashboard + /api/public/... + the inbox
    NETZAUSBAU_PUBLIC=1 streamlit run serve.py     # public mode: only the public page + /api/public/...

The internal server also imports from the inbox and answers the command line while it holds the store
(lib/localapi.py); a public server does neither.
"""

import streamlit as st

from lib import localapi
from lib.public import api, snapshot

PUBLIC = snapshot.public_mode()
app = st.App("dashboard.py", routes=api.ROUTES + ([] if PUBLIC else localapi.ROUTES),
             lifespan=None if PUBLIC else localapi.lifespan)
