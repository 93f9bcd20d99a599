"""Training: the trainer, the balancing engine, keep-best, combiners' own training routines (fit), and run_recipe
(the whole run). Imports every layer below it (api, recipe, data, model, rundir).
"""
