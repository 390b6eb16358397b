"""Self-contained web pages: the training-curves page and the parts the dashboard shares.

Every page works offline: the charts are drawn by flowdl's own small SVG renderer
(``static/charts.js``), inlined into each page, never fetched from a CDN.
"""
