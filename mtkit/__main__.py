"""`python -m mtkit` (and `accelerate launch -m mtkit run ...`)."""

from mtkit.cli.app import main

main()
