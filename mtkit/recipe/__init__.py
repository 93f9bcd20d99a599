"""Recipe files into typed, validated nodes. Imports mtkit.api only.

    file          reading a TOML recipe (errors name the file and line)
    overrides     --set key.path=value
    sections      what every table model shares: strict sections, component tables, ids, routing labels
    schema        the pydantic models of the file's tables (structure pass)
    phase_schema  the `[[phases]]` tables (their views, temperature schedules, few-shot draws)
    selectors     the grammar of `phases.N.train` (adapters, adapters.X, combiner, heads, backbone.layers.A-B)
    resolve       one resolve step: component tables -> (registry entry, validated config) nodes, phases included
    catalog       component tables and where they live in a recipe
    library       `[libraries.X]`: adapter libraries imported from PEFT folders
    reference     the generated recipe reference (docs/recipes.md)
    defaults      packaged model aliases and other defaults
"""
