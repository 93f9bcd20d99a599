"""Everything a run directory holds, and reading it back. Imports mtkit.api, mtkit.recipe, mtkit.data, mtkit.model.

    layout        RunDir: the directory's files, logs and JSON records
    lock          one writer at a time
    checkpoint    safetensors + JSON, written atomically
    manifest      hashes written last, verified by eval/predict/export
    evaluate      scoring a model on task data (predictions, routing weights)
    intervals     bootstrap 95% intervals over held-out examples
    tables        score tables that fit 80 columns (the CLI and report.md)
    predictions   the generated texts and predictions next to their scores
    analysis      routing analysis (JSON + heatmap)
    cost          inference time and FLOPs against the bare backbone
    gradient_report, report   report.md and its parts
    load          load_run, evaluate_run, predict_texts: a finished run rebuilt from its directory
    export        exports: PEFT folders with their heads, merged transformers models
"""
