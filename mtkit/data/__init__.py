"""Task data: loading sources, seeded splits, encoding for heads, input views and probes. Imports mtkit.api and
mtkit.recipe.
"""
