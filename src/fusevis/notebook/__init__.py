"""FuseVis in Jupyter: the viewer as a widget, linked to Python both ways.

Modules: :mod:`~fusevis.notebook.widget` (:class:`Explorer`, the anywidget),
:mod:`~fusevis.notebook.session` (its kernel side: the viewer's state, engine and maps
behind widget messages), :mod:`~fusevis.notebook.frontend` (the viewer's ES modules as the
widget's front end), :mod:`~fusevis.notebook.inputs` (models and images given in Python),
:mod:`~fusevis.notebook.errors`.
"""

from fusevis.notebook.errors import ExplorerError
from fusevis.notebook.widget import Explorer

__all__ = ["Explorer", "ExplorerError"]
