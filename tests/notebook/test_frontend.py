import re

import pytest

from fusevis.errors import FuseVisError
from fusevis.notebook.frontend import (
    ENTRY,
    VIEWER_JS,
    imports_of,
    load_order,
    module_sources,
    widget_css,
    widget_esm,
)


def test_the_widget_loads_the_viewers_own_modules() -> None:
    sources = module_sources()
    order = load_order(sources)
    assert order[-1] == ENTRY
    # every viewer module the widget uses is the viewer's file, unchanged
    for name in order[:-1]:
        assert (VIEWER_JS / name).read_text("utf-8") == sources[name]
    assert {"data.js", "layout.js", "paint.js", "views.js", "selection.js", "status.js"} <= set(
        order
    )
    assert "main.js" not in order  # the viewer's wiring (websocket, ids) is not loaded


def test_each_module_comes_after_the_modules_it_imports() -> None:
    sources = module_sources()
    order = load_order(sources)
    for position, name in enumerate(order):
        for dependency in imports_of(sources[name]):
            assert order.index(dependency) < position


def test_imported_names_are_exported_by_the_viewers_modules() -> None:
    sources = module_sources()
    pattern = re.compile(r'import\s*\{([^}]*)\}\s*from\s+"\./([\w-]+\.js)"')
    for names, module in pattern.findall(sources[ENTRY]):
        for name in (n.strip() for n in names.split(",") if n.strip()):
            assert re.search(rf"export (function|class|const) {name}\b", sources[module]), name


def test_the_esm_holds_every_module_in_order_and_the_loader() -> None:
    esm = widget_esm()
    assert "__FUSEVIS_MODULES__" not in esm
    assert "export default" in esm and "createObjectURL" in esm
    positions = [esm.index(f'["{name}", ') for name in load_order(module_sources())]
    assert positions == sorted(positions)
    assert "http://" not in esm and "https://" not in esm  # nothing fetched from the network
    assert ".fusevis-widget" in widget_css()


def test_a_missing_module_or_a_cycle_is_one_line() -> None:
    with pytest.raises(FuseVisError, match=r"^a\.js imports \./b\.js, which does not exist$"):
        load_order({"a.js": 'import { x } from "./b.js";'}, "a.js")
    cycle = {"a.js": 'import { x } from "./b.js";', "b.js": 'import { y } from "./a.js";'}
    with pytest.raises(FuseVisError, match="cycle"):
        load_order(cycle, "a.js")
