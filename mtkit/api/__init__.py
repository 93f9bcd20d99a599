"""What plugin authors use, and the bottom layer of mtkit: imports no other part of mtkit.

    errors        MtkitError and its few subclasses
    config        ComponentConfig and the per-kind config bases
    hookspecs     the pluggy markers and the one registration hook
    plugins       entry-point loading, one guarded load per plugin (the only module that touches pluggy)
    registry      (kind, name) -> component class, with the plugin that added it
    kinds         the interface each kind subclasses
    interfaces    Backbone, Head, Scheduler, DatasetSource, Metric, Balancer
    adapter       the Adapter interface and its optional capabilities (merge, export)
    combiner      the Combiner interface: how the deltas of several adapters at one site become one
    fitting       FitsItself: combiners with a training routine of their own, run by a recipe phase
    lowrank       the factored form of adapter families and the maths that composes them in inner space
    site_deltas   the deltas of a site's adapters, factored or materialised, as combiners receive them
    context       ForwardContext: facts about the batch (task ids, mask, representations)
    sites         the Linear modules adapters attach to
    seeding       per-component generators from (run seed, recipe key path)
    peft_format   reading and writing PEFT LoRA folders
    resources     locating packaged files; textfile: reading text files with clear errors
"""
