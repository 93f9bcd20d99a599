"""Building and running the multi-task model: components from resolved nodes, adapter sites, combiner slots,
parameter groups, what adapters imported from PEFT bring along (their heads), and backbone passes shared by the
heads of several tasks over the same tokens (shared_passes). Imports mtkit.api, mtkit.recipe and mtkit.data.
"""
