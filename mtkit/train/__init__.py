"""Training: the trainer (its scorings in scoring, its callbacks and learning-rate schedule beside it), the balancing
engine, keep-best, combiners' own training routines (fit), and run_recipe (the whole run). Imports every layer below
it (api, recipe, data, model, rundir).
"""
