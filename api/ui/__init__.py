"""The web UI: server-rendered pages under /ui, a cookie session, plotly charts."""
