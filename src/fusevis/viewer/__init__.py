"""The interactive viewer: a FastAPI server and a plain ES-module front end.

Modules: :mod:`~fusevis.viewer.state` (one page's state, no GUI),
:mod:`~fusevis.viewer.hover` (per-pixel engine, one thread),
:mod:`~fusevis.viewer.scheduler` (background maps), :mod:`~fusevis.viewer.data` (the two
held together, and :func:`build_viewer_data`), :mod:`~fusevis.viewer.frames` (binary
frames), :mod:`~fusevis.viewer.access` (token, Host, Origin), :mod:`~fusevis.viewer.app`
(routes and websocket), :mod:`~fusevis.viewer.server` (uvicorn). The websocket protocol is
written down in ``docs/viewer.md``.
"""

from fusevis.viewer.app import create_app
from fusevis.viewer.data import ViewerData, build_viewer_data
from fusevis.viewer.server import serve, start_in_thread
from fusevis.viewer.state import ViewerState

__all__ = [
    "ViewerData",
    "ViewerState",
    "build_viewer_data",
    "create_app",
    "serve",
    "start_in_thread",
]
