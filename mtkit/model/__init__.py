"""Building and running the multi-task model: components from resolved nodes, adapter sites, combiner slots,
parameter groups, and what adapters imported from PEFT bring along (their heads). Imports mtkit.api, mtkit.recipe
and mtkit.data.
"""
