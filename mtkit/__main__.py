"""`python -m mtkit` (and `accelerate launch -m mtkit run ...`)."""

from mtkit.cli import main

main()
