"""Command-line interface (typer). Each command is a thin wrapper over library calls."""
