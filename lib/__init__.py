"""Netzausbau-Monitor core: plain Python, no Streamlit (except lib/cache.py)."""
