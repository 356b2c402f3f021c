"""The interactive viewer: a FastAPI server and a plain ES-module front end."""

from fusevis.viewer.app import create_app
from fusevis.viewer.engine import ViewerData
from fusevis.viewer.server import serve, start_in_thread
from fusevis.viewer.state import ViewerState

__all__ = ["ViewerData", "ViewerState", "create_app", "serve", "start_in_thread"]
