"""Sweeps behind `mtkit ablate`, one job per module:

    variants     what varies: --swap, --variant, --seeds
    resolve      variants x seeds -> validated recipes (type swaps drop keys the new type does not accept)
    plan         run directories, and leading phases that runs share (trained once, then forked)
    job          one run in this process: skip, resume, fork or start; `python -m mtkit.sweep.job` in a worker
    executors    this process, worker subprocesses, and the loop that starts forks after their shared run
    ray_tasks    runs as Ray tasks (`pip install 'mtkit[ray]'`)
    stats        mean, standard error and paired differences with t intervals (scipy)
    comparison   scores read from the run directories, per variant over seeds
    write        comparison.csv, runs.csv, comparison.md, provenance.json
    plots        comparison.png (scores), comparison_cost.png (scores against inference cost)
    provenance   what produced a comparison: mtkit version and commit, packages, hardware

The entry point is mtkit.sweep.ablate.run_ablation.
"""
