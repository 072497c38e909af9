"""The `trafficgen` command. Sub-modules each define ``register(app, tm_app)``.

Heavy imports (torch, transformers, diffusers) happen inside command bodies, so ``--help`` is fast.
"""
from __future__ import annotations

import importlib
import sys

import typer

# rich_markup_mode=None: plain click help (typer's rich panels print "<bool>" after every flag) and
# plain one-line errors, which read the same in a terminal and in a log file.
app = typer.Typer(
    name="trafficgen",
    help="Synthetic network traffic: ingest captures, train generators, sample, evaluate; "
    "traffic-matrix forecasting and estimation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
tm_app = typer.Typer(help="Traffic matrices: train, forecast, evaluate, synthesize, estimate.",
                     no_args_is_help=True, rich_markup_mode=None)
app.add_typer(tm_app, name="tm")


def _version(value: bool) -> None:
    if value:
        from trafficgen import __version__

        typer.echo(f"trafficgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    pass


#: Command modules, in help order. Each owns its commands.
COMMAND_MODULES = [
    "trafficgen.cli.flows",  # ingest, info
    "trafficgen.cli.export",  # export
    "trafficgen.cli.generate",  # train, sample, classes
    "trafficgen.cli.evaluate",  # fidelity, evaluate
    "trafficgen.cli.efficiency",  # profile, quantize
    "trafficgen.cli.recipe",  # recipe run
    "trafficgen.cli.tm",  # tm train, tm forecast, tm evaluate
    "trafficgen.cli.tm_estimate",  # tm synthesize, tm estimate
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not part of this build
                continue
            raise
        module.register(app, tm_app)


_register_all()


def _usage_error_types() -> tuple[type, ...]:
    """The exception classes of the click that typer runs on: typer >= 0.25 ships its own copy
    (``typer._click``, public base :class:`typer.TyperException`), older typers use ``click``."""
    types: list[type] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:  # pragma: no cover
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def _exit_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(Exit classes, Abort classes) of typer and, where installed, click."""
    exits, aborts = [typer.Exit], [typer.Abort]
    try:
        import click
    except ImportError:  # pragma: no cover
        pass
    else:
        exits.append(click.exceptions.Exit)
        aborts.append(click.exceptions.Abort)
    return tuple(exits), tuple(aborts)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Exit codes: 0 success; 1 a typed library error, a file that
    cannot be read or written, or memory exhausted (one line ``error: ...`` on stderr); 2 a usage
    error (click's short usage and one error line); 130 interrupted (Ctrl-C)."""
    from trafficgen.errors import TrafficgenError

    usage_errors = _usage_error_types()
    exits, aborts = _exit_types()
    try:
        # standalone_mode=False: library errors reach the handlers below instead of typer's; typer
        # then *returns* the exit code of a KeyboardInterrupt (130) or of ctx.exit(n).
        rv = app(args=argv, standalone_mode=False)
    except TrafficgenError as exc:
        _fail(f"error: {exc}")
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("error: out of memory (try fewer flows, packets or a smaller batch)")
    except exits as exc:
        sys.exit(exc.exit_code)
    except aborts:
        _fail("aborted")
    except usage_errors as exc:
        exc.show()
        sys.exit(getattr(exc, "exit_code", 2))
    except OSError as exc:  # a missing, unreadable or unwritable file
        _fail(f"error: {_os_error_text(exc)}")
    if rv == 130:
        _fail("interrupted", 130)
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        sys.exit(rv)


def _os_error_text(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    main()
