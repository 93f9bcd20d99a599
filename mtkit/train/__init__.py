"""Training: the trainer, the balancing engine, keep-best, and run_recipe (the whole run). Imports every layer
below it (api, recipe, data, model, rundir).
"""
