"""`trafficgen recipe run NAME`, `trafficgen recipe list`."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    recipe_app = typer.Typer(help="Rerun a paper's tables from a YAML recipe.", no_args_is_help=True)
    app.add_typer(recipe_app, name="recipe")

    @recipe_app.command("list")
    def list_recipes() -> None:
        """List the shipped recipes."""
        from trafficgen.recipes.runner import available_recipes

        for name in available_recipes():
            typer.echo(name)

    @recipe_app.command("run")
    def run(
        name: str = typer.Argument(..., help="Recipe name (see `trafficgen recipe list`) or a YAML path."),
        out: Path = typer.Option(None, "-o", "--out", help="Output folder (default: runs/recipe-NAME)."),
        quick: bool = typer.Option(False, "--quick", help="Tiny version (minutes) for smoke tests."),
        seed: int = typer.Option(None, "--seed", help="Override the recipe's seed."),
        device: str = typer.Option(None, "--device", help="Run the recipe's torch models on auto, cpu, cuda, "
                                   "cuda:N or mps (default: the recipe's, else auto)."),
    ) -> None:
        """Run a recipe and write its tables, plots and summary.md."""
        from trafficgen._device import resolve_device
        from trafficgen._io import check_output_path
        from trafficgen.recipes.runner import run_recipe

        if device is not None:
            resolve_device(device, option="--device")

        out = out or Path("runs") / f"recipe-{Path(name).stem}{'-quick' if quick else ''}"
        check_output_path(out, "dir")
        given = {"seed": seed, "device": device}
        overrides = {k: v for k, v in given.items() if v is not None} or None
        results = run_recipe(name, out, quick=quick, overrides=overrides)
        typer.echo(f"wrote {out} ({results.get('wall_time_s', 0):.1f} s)")
