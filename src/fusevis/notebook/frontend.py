"""The widget's front end: the viewer's ES modules and ``widget.js``, served as one ESM.

One code base for both front ends: the viewer's modules are read from
``fusevis/viewer/static/js`` as they are, with the widget's own ``widget.js`` (its wiring,
in place of the viewer's ``main.js``) and handed to the notebook inside a small loader
(``static/loader.js``) that imports each one from a blob URL, relative imports pointed at
the modules they name. No bundler runs and nothing is fetched from the network.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from fusevis.errors import FuseVisError
from fusevis.viewer.app import STATIC_DIR as VIEWER_STATIC

VIEWER_JS = VIEWER_STATIC / "js"
WIDGET_STATIC = Path(__file__).parent / "static"
ENTRY = "widget.js"
_IMPORT = re.compile(r'from\s+"\./([\w-]+\.js)"')


def module_sources() -> dict[str, str]:
    """Every module the widget may load, by file name: the viewer's and ``widget.js``."""
    sources = {path.name: path.read_text("utf-8") for path in sorted(VIEWER_JS.glob("*.js"))}
    sources[ENTRY] = (WIDGET_STATIC / ENTRY).read_text("utf-8")
    return sources


def imports_of(source: str) -> list[str]:
    """The relative modules (``./name.js``) a module imports."""
    return _IMPORT.findall(source)


def load_order(sources: dict[str, str], entry: str = ENTRY) -> list[str]:
    """The modules ``entry`` needs, each after the modules it imports (``entry`` last).

    Raises
    ------
    FuseVisError
        A module imports one that does not exist, or the imports form a cycle.
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, importer: str) -> None:
        if name in order:
            return
        if name not in sources:
            raise FuseVisError(f"{importer} imports ./{name}, which does not exist")
        if name in visiting:
            raise FuseVisError(f"the widget's modules import each other in a cycle at {name}")
        visiting.add(name)
        for dependency in imports_of(sources[name]):
            visit(dependency, name)
        visiting.discard(name)
        order.append(name)

    visit(entry, entry)
    return order


@cache
def widget_esm() -> str:
    """The widget's ``_esm``: the loader with the modules it needs, in load order."""
    sources = module_sources()
    modules = [[name, sources[name]] for name in load_order(sources)]
    loader = (WIDGET_STATIC / "loader.js").read_text("utf-8")
    # "</" is escaped so that no module text can end a <script> element the ESM is put in
    return loader.replace("__FUSEVIS_MODULES__", json.dumps(modules).replace("</", "<\\/"))


@cache
def widget_css() -> str:
    """The widget's ``_css`` (the viewer's look, scoped to ``.fusevis-widget``)."""
    return (WIDGET_STATIC / "widget.css").read_text("utf-8")
