"""``fusevis data``: the built-in demo image sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="List and export the built-in demo image sets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
def list_sets() -> None:
    """Show the demo image sets (all 256×256, built offline from bundled files)."""
    from rich.console import Console
    from rich.table import Table

    from fusevis.io.demo import DEMO_SETS

    table = Table("name", "inputs", "description")
    for demo in DEMO_SETS.values():
        table.add_row(demo.name, " + ".join(demo.modalities), demo.description)
    Console().print(table)


@app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="Demo set name (see `fusevis data list`).")],
    folder: Annotated[Path, typer.Argument(help="Folder to write PNG files into.")],
) -> None:
    """Write a demo set to FOLDER as 8-bit PNG files, one per input (plus reference)."""
    from fusevis.io.demo import export_demo

    for path in export_demo(name, folder):
        typer.echo(str(path))
