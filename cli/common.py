"""What both commands share: one-line errors, multi-value options, progress bars."""
from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import click
import typer

from scaledet.labelspace.io.errors import ScaledetError, explain
from scaledet.labelspace.io.output_dirs import BUILD_KIND, output_kind

F = TypeVar("F", bound=Callable)


#: Characters that must not reach a terminal raw: C0 / C1 controls (a NUL from a file name) and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The longest error line printed: a message that echoes an input (a name, a value) shows an excerpt of it,
#: however large the input was.
MAX_MESSAGE_CHARS = 600


def printable_message(message: str) -> str:
    """One line a terminal shows as it is: control characters written as escapes (``\x00``), and the empty
    parentheses an exception without arguments leaves (``cannot be read ()``) dropped, and at most
    ``MAX_MESSAGE_CHARS`` long."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = f"{message[:MAX_MESSAGE_CHARS]}… ({len(message) - MAX_MESSAGE_CHARS:,} more characters not shown)"
    message = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), message)
    return re.sub(r"\s*\(\s*\)", "", message)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit non-zero."""
    typer.echo(f"error: {printable_message(message)}", err=True)
    raise typer.Exit(code)


def user_errors(func: F) -> F:
    """The one guard every command runs under: any exception becomes one ``error:`` line.

    A user's mistake (:class:`ScaledetError`, a file-system error, memory) exits 2; anything else is a
    bug of ours and exits 1, saying how to see the full trace (``SCALEDET_DEBUG=1`` re-raises)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            fail("interrupted; earlier output is left as it was", code=130)
        except Exception as err:  # noqa: BLE001 - the final guard
            if os.environ.get("SCALEDET_DEBUG"):
                raise
            message, code = explain(err)
            fail(message, code)

    return wrapper  # type: ignore[return-value]



#: Multi-value options whose values are plain keys, so ``--datasets=lvis,coco`` may list them with commas.
#: Templates and paths may hold commas (``--template="a photo of a {}, in the wild."``): never split.
COMMA_LIST_OPTIONS = frozenset({"--datasets"})


def expand_multi_value_options(argv: list[str], options: Iterable[str]) -> list[str]:
    """Let ``--datasets lvis coco o365`` mean ``--datasets lvis --datasets coco --datasets o365``.

    Click options take one value each; researchers type space-separated lists (as in argparse's
    ``nargs='+'``), so the values that follow a multi-value option up to the next ``-``-prefixed token
    are rewritten as repeated options before click sees them. ``--datasets=lvis,coco`` works too; other
    options keep an ``=`` value whole.
    """
    options = set(options)
    out: list[str] = []
    current: str | None = None
    for token in argv:
        if token.startswith("-"):
            name, eq, value = token.partition("=")
            current = name if name in options else None
            if current is None:
                out.append(token)
            elif eq and current in COMMA_LIST_OPTIONS:
                out.extend(f"{current}={v}" for v in value.split(",") if v)
            elif eq:
                out.append(token)
        elif current is not None:
            out.extend([current, token])
        else:
            out.append(token)
    return out


class TqdmProgress:
    """A tqdm bar on stderr, shown for long work (disabled with ``--quiet``)."""

    def __init__(self, total: int, desc: str, unit: str, disable: bool = False) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                         dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def progress_factory(desc: str, unit: str, quiet: bool) -> Callable[[int], TqdmProgress]:
    return lambda total: TqdmProgress(total, desc, unit, disable=quiet)


def add_version_option(app: typer.Typer, prog_name: str) -> None:
    """``PROG --version``: the installed scaledet version, as every command-line tool answers it."""

    def show(value: bool) -> None:
        if value:
            from importlib.metadata import PackageNotFoundError, version

            try:
                installed = version("scaledet")
            except PackageNotFoundError:
                installed = "unknown (not installed)"
            typer.echo(f"{prog_name} {installed}")
            raise typer.Exit()

    @app.callback()
    def _options(version: bool = typer.Option(False, "--version", help="Show the version and exit.",
                                              callback=show, is_eager=True)) -> None:
        pass


def run_app(app: typer.Typer, prog_name: str, multi_value_options: Iterable[str] = ()) -> None:
    from scaledet.labelspace.io import output_dirs

    output_dirs.HOLD_LOCKS = True  # a command holds each folder it writes until it exits
    argv = expand_multi_value_options(sys.argv[1:], multi_value_options)
    app(args=argv, prog_name=prog_name)


#: The build a command reads when none is named.
DEFAULT_LABELSPACE = Path("runs/labelspace")
OLD_OUT_NOTICE = ("note: --out {path} names the build this command reads, as scaledet 0.x spelled it; write "
                  "--labelspace {path} (--out will name only where a command writes)")


def build_to_read(labelspace: Path | None, old_out: Path | None) -> Path:
    """The build a read-only command (inspect, list) reads: ``--labelspace``, or the old ``--out`` with a
    notice (one release of grace), or runs/labelspace."""
    if labelspace is not None and old_out is not None:
        raise ScaledetError("give the build once: --labelspace (--out is its old spelling)")
    if old_out is not None:
        typer.echo(OLD_OUT_NOTICE.format(path=old_out), err=True)
    return labelspace or old_out or DEFAULT_LABELSPACE


def build_and_destination(labelspace: Path | None, out: Path | None, old_to: Path | None,
                          default_child: str | None) -> tuple[Path, Path | None]:
    """(build read, folder written) for graph, merge, export, report and unify.

    One meaning per flag: ``--labelspace`` is the build a command reads, ``--out`` where it writes. Until
    the next release the 0.x spellings still work, each with a notice: ``--to DIR`` for the output, and
    ``--out BUILD`` for the build, which is recognised when ``--to`` is given, or when ``--out`` names a
    labelspace build and ``--labelspace`` is not given (no command may write its output over a build, so
    that reading is never ambiguous). ``default_child``: the output folder inside the build when none is
    named (None: the output must be named)."""
    if old_to is not None:
        if labelspace is None and out is not None:
            typer.echo(OLD_OUT_NOTICE.format(path=out), err=True)
            labelspace, out = out, None
        if out is not None:
            raise ScaledetError("give the output once: --out (--to is its old spelling)")
        typer.echo(f"note: --to {old_to} is the 0.x spelling of --out {old_to}", err=True)
        out = old_to
    elif labelspace is None and out is not None and output_kind(out) == BUILD_KIND:
        typer.echo(OLD_OUT_NOTICE.format(path=out), err=True)
        labelspace, out = out, None
    build = labelspace or DEFAULT_LABELSPACE
    if out is None and default_child is not None:
        out = build / default_child
    return build, out
