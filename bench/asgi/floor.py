"""The floor of bench/pages.py: a Streamlit page with one element of each kind the dashboard's pages draw (a table,
a Plotly chart, a pydeck map), each tiny. Its first view in a new tab is what Streamlit and the browser cost on
this machine whatever the data: the part of a page's first view no change to the dashboard can take away."""

import pandas as pd
import plotly.graph_objects as go
import pydeck as pdk
import streamlit as st

st.title("Floor")
st.dataframe(pd.DataFrame({"a": [1, 2, 3]}), key="table")
st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])), key="chart")
st.pydeck_chart(pdk.Deck(layers=[pdk.Layer("ScatterplotLayer", [{"p": [10.0, 51.0]}], get_position="p",
                                           get_radius=1000)],
                         initial_view_state=pdk.ViewState(latitude=51, longitude=10, zoom=5), map_style=None),
                key="map")
st.caption("end")
