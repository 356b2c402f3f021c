"""The ``fusevis`` command: a typer application assembling the sub-commands."""

from __future__ import annotations

from typing import Annotated

import typer

from fusevis.cli import data
from fusevis.cli.analyze import analyze_command
from fusevis.cli.demo import demo_command
from fusevis.cli.errors import guarded
from fusevis.cli.fuse import fuse_command
from fusevis.cli.metrics import metrics_command
from fusevis.cli.report import report_command
from fusevis.cli.saliency import guidance_command, saliency_command
from fusevis.cli.train import train_command
from fusevis.cli.view import view_command

app = typer.Typer(
    name="fusevis",
    help="FuseVis: exact per-pixel saliency for deep image-fusion networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: rich's formatter costs 0.3-0.5 s per --help
)
app.add_typer(data.app, name="data")
app.command("fuse")(fuse_command)
app.command("demo")(demo_command)
app.command("train")(train_command)
app.command("saliency")(saliency_command)
app.command("guidance")(guidance_command)
app.command("view")(view_command)
app.command("report")(report_command)
app.command("analyze")(analyze_command)
app.command("metrics")(metrics_command)


def _print_version(value: bool) -> None:
    if value:
        from fusevis import __version__

        typer.echo(f"fusevis {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """FuseVis: exact per-pixel saliency for deep image-fusion networks."""


def run() -> None:
    """Console-script entry point."""
    guarded(app)
