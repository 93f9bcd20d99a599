"""The Typer app on top of every layer (mtkit.cli.app), and plugin scaffolding (mtkit.cli.scaffold).

Listing commands import no torch: their modules load only mtkit.api and mtkit.recipe.
"""

from mtkit.cli.app import app, main

__all__ = ["app", "main"]
