"""The web view: server-rendered pages (Jinja2) over the same store and statistics as the API."""
