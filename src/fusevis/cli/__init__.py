"""The ``fusevis`` command line."""
