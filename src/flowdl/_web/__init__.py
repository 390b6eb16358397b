"""Self-contained web pages: the training-curves page and the parts the dashboard shares.

Every page works offline: plotly.js comes from the installed ``plotly`` package and is
inlined (or served by the monitor's own server), never fetched from a CDN.
"""
