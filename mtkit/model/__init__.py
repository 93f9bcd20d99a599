"""Building and running the multi-task model: components from resolved nodes, adapter sites, combiner slots,
parameter groups. Imports mtkit.api, mtkit.recipe and mtkit.data.
"""
