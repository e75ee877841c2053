"""``scaledet``: train, evaluate and run the detector."""
from __future__ import annotations

import typer

from .common import run_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ScaleDet detector: train / eval / predict on a labelspace build.")


def main() -> None:
    run_app(app, "scaledet")
