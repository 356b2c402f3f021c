"""``python -m fusevis`` runs the command line."""

from fusevis.cli.main import run

run()
