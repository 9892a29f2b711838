"""Sphinx extension: serve the installed plotly.js once per book, offline.

Chapters display figures through ``cryoposes.plotting``'s renderer, whose HTML calls
``Plotly.newPlot`` but does not carry plotly.js. This extension writes the plotly.js of the
installed plotly (so library and figure JSON always match) into the book's ``_static`` folder
and loads it, before the page body runs, on each page that holds a figure.
"""

from pathlib import Path

from plotly.offline import get_plotlyjs
from plotly import __version__ as plotly_version

#: File name under ``_static``; the version in the name defeats stale browser caches.
PLOTLY_JS = f"plotly-{plotly_version}.min.js"


def _add_to_pages_with_figures(app, pagename, templatename, context, doctree):
    if "plotly-graph-div" in context.get("body", ""):
        app.add_js_file(PLOTLY_JS)


def _write_plotly_js(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        (static / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")


def setup(app):
    app.connect("html-page-context", _add_to_pages_with_figures)
    app.connect("build-finished", _write_plotly_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
