"""The `trafficgen` command. Sub-modules each define ``register(app, tm_app)``.

Heavy imports (torch, transformers, diffusers) happen inside command bodies, so ``--help`` is fast.
"""
from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="trafficgen",
    help="Synthetic network traffic: ingest captures, train generators, sample, evaluate; "
    "traffic-matrix forecasting and estimation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tm_app = typer.Typer(help="Traffic matrices: train, forecast, evaluate, synthesize, estimate.",
                     no_args_is_help=True)
app.add_typer(tm_app, name="tm")

#: Command modules, in help order. Each owns its commands.
COMMAND_MODULES = [
    "trafficgen.cli.flows",  # ingest, info
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


def main() -> None:
    """Console-script entry point: typed library errors become one line and exit code 1."""
    from trafficgen.errors import TrafficgenError

    try:
        app(standalone_mode=False)
    except TrafficgenError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
