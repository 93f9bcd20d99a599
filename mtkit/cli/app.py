"""The `mtkit` command line: the only module that prints to the terminal or exits.

Each command is a thin wrapper over a plain function. A user error (bad recipe, unknown
component, missing file or package) prints one message to stderr and exits 2, no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table

from mtkit.api.errors import MtkitError, RecipeError

if TYPE_CHECKING:  # the sweep modules import numpy and scipy; listing commands start without them
    from mtkit.sweep.comparison import Comparison
    from mtkit.sweep.job import Outcome
    from mtkit.sweep.plan import JobSpec

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Multi-task learning with parameter-efficient adapters.")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # messages quote [extras] and [tables]
    raise typer.Exit(2)


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body, turning user errors into one message and exit code 2."""
    try:
        return fn()
    except RecipeError as exc:
        if len(exc.problems) == 1:
            fail(exc.problems[0])
        fail(f"{len(exc.problems)} problems:\n" + "\n".join(f"  - {p}" for p in exc.problems))
    except MtkitError as exc:
        fail(str(exc))


def _quiet() -> None:
    """No progress bars or load notices from the libraries underneath (datasets, transformers): mtkit says what matters."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _registry() -> Any:
    from mtkit.api.registry import load_registry

    return load_registry()


# --- listing ---------------------------------------------------------------------------------


@app.command("list-components")
def list_components(
    kind: Annotated[str | None, typer.Option(help="Only this kind (backbone, adapter, combiner, head, scheduler, dataset, metric, balancer).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List registered components with their plugin, and plugins that failed to load."""
    from mtkit.api.config import KINDS
    from mtkit.recipe.catalog import listing

    if kind is not None and kind not in KINDS:
        fail(f"--kind {kind!r} is not a component kind (known: {', '.join(sorted(KINDS))})")
    data = guarded(lambda: listing(_registry(), kind))
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table("kind", "name", "plugin", "summary", box=None, header_style="bold")
    for c in data["components"]:
        table.add_row(c["kind"], c["name"], f"{c['plugin']} ({c['distribution']} {c['version']})".replace(" ( )", ""), c["summary"])
    out.print(table)
    for p in data["plugins"]:
        if p["status"] != "ok":
            err.print(f"[yellow]plugin {p['name']} ({p['distribution']} {p['version']}): {p['status']}[/] {p['error'] or ''}", highlight=False)


@app.command()
def show(kind: Annotated[str, typer.Argument(help="Component kind.")], name: Annotated[str, typer.Argument(help="Registered name.")]) -> None:
    """Show a component's config fields: type, default, constraints and description."""
    from mtkit.recipe.catalog import component_fields

    entry = guarded(lambda: _registry().get(kind, name))
    out.print(f"[bold]{kind} {name}[/]  ({entry.plugin.label()})\n{entry.summary}\n", highlight=False)
    rows = component_fields(entry)
    table = Table("field", "type", "default", "constraints", "description", header_style="bold")
    for row in rows:
        table.add_row(*row.values())
    # A table whose description column would be squeezed to a word or two reads worse than a list.
    fixed = Measurement.get(out, out.options, Table(*("field", "type", "default", "constraints"))).maximum
    widths = [max(len(str(row[c])) for row in rows) for c in ("field", "type", "default", "constraints")] if rows else [0]
    if not rows or sum(widths) + max(fixed, 13) + 40 <= out.width:
        out.print(table)
        return
    for row in rows:
        limits = ", ".join(part for part in (row["type"], f"default {row['default']}", row["constraints"]) if part)
        out.print(f"[bold]{row['field']}[/]  ({limits})", highlight=False, soft_wrap=True)
        out.print(Padding(row["description"], (0, 0, 0, 4)), highlight=False)


@app.command()
def validate(
    recipes: Annotated[list[Path], typer.Argument(help="Recipe files.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.path=value override applied to every recipe (repeatable).")] = None,
) -> None:
    """Validate recipes (structure and every component's params) without building models."""
    from mtkit.recipe.resolve import load_recipe

    failed = []
    for path in recipes:
        try:
            load_recipe(path, set_ or [], registry=_registry())
            out.print(f"[green]ok[/] {path}", highlight=False)
        except MtkitError as exc:
            failed.append(exc)
            err.print(str(exc), highlight=False, soft_wrap=True)
    if failed:
        fail(f"{len(failed)} of {len(recipes)} recipe(s) invalid")


@app.command()
def docs(
    output: Annotated[Path | None, typer.Option(help="Write the reference here (e.g. docs/recipes.md) instead of printing it.")] = None,
    components: Annotated[bool, typer.Option("--components", help="The table of built-in components by kind (README.md's) instead.")] = False,
) -> None:
    """Print the recipe reference: every section and every field of every built-in component (docs/recipes.md)."""
    from mtkit.recipe.reference import component_table, recipe_reference

    generate = component_table if components else recipe_reference
    text = guarded(lambda: generate(_registry()))
    if output is None:
        print(text, end="")
        return
    output.write_text(text, encoding="utf-8")
    out.print(f"wrote {output}", highlight=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of recipes (for editor completion and checks)."""
    from mtkit.recipe.catalog import recipe_schema

    print(json.dumps(guarded(lambda: recipe_schema(_registry())), indent=2))


# --- runs ------------------------------------------------------------------------------------


class _Progress:
    """Rich progress bars and evaluation tables for `mtkit run`."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err
        )
        self.task: Any = None
        self.validation = ""  # the last validation score, while the phase runs

    def phase_started(self, name: str, steps: int, start: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.progress.start()
        self.task = self.progress.add_task(f"phase {name}", total=steps, completed=start, info="")
        self.validation = ""

    def step_done(self, step: int, logs: Mapping[str, float]) -> None:
        if "validation" in logs:
            self.validation = f", validation {logs['validation']:.4f} at step {step}"
        self.progress.update(self.task, completed=step, info=f"loss {logs['loss']:.4f}{self.validation}")

    def notice(self, message: str) -> None:
        err.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)

    def evaluated(
        self, phase: str, routing: str, scores: Mapping[str, Mapping[str, float]], intervals: Mapping[str, Mapping[str, list[float]]]
    ) -> None:
        self.progress.stop()
        err.print(score_table(scores, f"{phase} ({routing} routing)", intervals=intervals))

    def probes_evaluated(self, routing: str, scores: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None:
        self.progress.stop()
        rows = {f"{task}/{probe}": values for task, by_probe in scores.items() for probe, values in by_probe.items()}
        err.print(score_table(rows, f"probes ({routing} routing)", first="task/probe"))


def score_table(
    scores: Mapping[str, Mapping[str, float]],
    title: str | None = None,
    first: str = "task",
    intervals: Mapping[str, Mapping[str, list[float]]] | None = None,
) -> Table:
    """One row per task (or probe) and metric, so any mix of metrics fits 80 columns; with `intervals`, a column of
    bootstrap 95% intervals."""
    from mtkit.rundir.tables import format_interval, format_score, score_rows

    table = Table(title=title, header_style="bold")
    table.add_column(first, overflow="fold")
    table.add_column("metric", overflow="fold")
    table.add_column("score", justify="right")
    shown = any(intervals.values()) if intervals else False
    if shown:
        table.add_column("95% interval", justify="right")
    previous = None
    for task, metric in score_rows({"score": scores}):
        cells = [task if task != previous else "", metric, format_score(scores[task][metric])]
        table.add_row(*cells, *([format_interval((intervals or {}).get(task, {}).get(metric))] if shown else []))
        previous = task
    return table


def comparison_table(by_routing: Mapping[str, Mapping[str, Mapping[str, float]]], intervals: Mapping[str, Any], title: str) -> Table:
    """One phase's evaluations side by side (base, oracle, learned); each cell the score over its 95% interval."""
    from mtkit.rundir.tables import comparison_columns, format_interval, format_score, score_rows

    table = Table(title=title, header_style="bold")
    table.add_column("task", overflow="fold")
    table.add_column("metric", overflow="fold")
    columns = comparison_columns(by_routing)
    for routing in columns:
        table.add_column(routing, justify="right")
    previous = None
    for task, metric in score_rows(by_routing):
        cells = []
        for routing in columns:
            value = by_routing[routing].get(task, {}).get(metric)
            bounds = intervals.get(routing, {}).get(task, {}).get(metric)
            cells.append("" if value is None else "\n".join(filter(None, [format_score(value), format_interval(bounds)])))
        table.add_row(task if task != previous else "", metric, *cells)
        previous = task
    return table


def _comparison_summary(run_dir: Path) -> None:
    """The last phase's evaluations side by side, when it has several (base, oracle, learned)."""
    from mtkit.rundir.intervals import FILE as INTERVALS_FILE

    file = run_dir / "results.json"
    if not file.is_file():  # a process of a multi-process run other than the main one, which writes it
        return
    results = json.loads(file.read_text(encoding="utf-8"))
    if not results:
        return
    phase, by_routing = list(results.items())[-1]
    if len(by_routing) < 2:
        return
    file = run_dir / INTERVALS_FILE
    intervals = json.loads(file.read_text(encoding="utf-8"))["intervals"].get(phase, {}) if file.is_file() else {}
    err.print(comparison_table(by_routing, intervals, f"{phase}: scores with bootstrap 95% intervals"))


def _routing_summary(run_dir: Path) -> None:
    """Routing accuracy per task and per probe at the end of a run with a learned combiner (from routing.json)."""
    file = run_dir / "routing.json"
    if not file.is_file():
        return
    summary = json.loads(file.read_text(encoding="utf-8"))
    table = Table(title="routing accuracy (largest weight on the task's own adapter)", header_style="bold")
    table.add_column("held-out split / probe")
    table.add_column("routing accuracy", justify="right")
    for task, accuracy in summary.get("routing_accuracy", {}).items():
        table.add_row(task, f"{accuracy:.4f}")
    for key, accuracy in summary.get("probes", {}).get("routing_accuracy", {}).items():
        table.add_row(f"{key} (probe)", f"{accuracy:.4f}")
    err.print(table)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML, or a run directory's recipe.json).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe value: key.path=value (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run directory from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
) -> None:
    """Train and evaluate a recipe; everything lands in its run directory."""
    from mtkit.train.run import run_recipe

    _quiet()  # rich shows the progress that matters
    run_dir = guarded(lambda: run_recipe(recipe, set_ or [], resume=resume, overwrite=overwrite, callbacks=_Progress()))
    _comparison_summary(run_dir.path)
    _routing_summary(run_dir.path)
    out.print(f"run directory: {run_dir.path}  (report: {run_dir.path / 'report.md'})", highlight=False)


@app.command()
def ablate(
    recipe: Annotated[Path, typer.Argument(help="Recipe file.")],
    swap: Annotated[list[str] | None, typer.Option(help="key.path=a,b,c: one variant per value (repeatable).")] = None,
    variant: Annotated[list[str] | None, typer.Option(help="'name: key=value; key=value': a named variant (repeatable).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override applied to every variant (repeatable).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Repeat every variant at these seeds (run.seed): 0-4, or 0,3,7.")] = None,
    split_seeds: Annotated[bool, typer.Option(help="Also draw every task's held-out split with the run's seed (dataset.split_seed).")] = False,
    reference: Annotated[str | None, typer.Option(help="Variant the others are paired against (default: the first).")] = None,
    workers: Annotated[int, typer.Option(help="Runs at once on this machine, each in a worker process with its share of threads (1: in this process).")] = 1,
    threads: Annotated[int | None, typer.Option(help="CPU threads the workers share (default: run.threads, else torch's default).")] = None,
    ray: Annotated[bool, typer.Option(help="Run each variant x seed as a Ray task (pip install 'mtkit\\[ray]'); starts a local Ray unless --ray-address.")] = False,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join (implies --ray), e.g. ray://head:10001 or auto.")] = None,
    ray_cpus: Annotated[float, typer.Option(help="CPUs each Ray task reserves (and its torch threads).")] = 1.0,
    ray_gpus: Annotated[float, typer.Option(help="GPUs each Ray task reserves.")] = 0.0,
    share: Annotated[bool, typer.Option(help="Train leading phases that runs agree on once, then fork (--no-share: every run from scratch).")] = True,
    output_dir: Annotated[Path | None, typer.Option(help="Where the runs and the comparison go (default runs/<name>-ablation).")] = None,
) -> None:
    """Run recipe variants (x seeds) with the same data and steps; print and save one comparison. Rerun to resume."""
    from mtkit.sweep.ablate import Execution, parse_seeds, parse_swap, parse_variant, run_ablation

    def body() -> Any:
        variants = [v for spec in swap or [] for v in parse_swap(spec)] + [parse_variant(spec) for spec in variant or []]
        execution = Execution(workers, threads, ray or ray_address is not None, ray_address, ray_cpus, ray_gpus)
        return run_ablation(
            recipe, variants, set_ or [], seeds=parse_seeds(seeds) if seeds else None, split_seeds=split_seeds, reference=reference,
            output_dir=output_dir, execution=execution, share=share, callbacks=lambda key: _Progress(), on_event=_sweep_event,
        )

    _quiet()
    comparison = guarded(body)
    for table in ablation_tables(comparison, str(recipe)):
        _print_fitted(table)
    for line in ablation_notes(comparison):
        out.print(line, highlight=False, soft_wrap=True)
    trained = sum(not r.skipped for r in comparison.runs)
    out.print(f"{trained} of {len(comparison.runs)} runs trained in {comparison.seconds:.1f} s (the others had finished before)", highlight=False)
    out.print(f"comparison: {comparison.root}/comparison.csv, comparison.md, comparison.png, comparison_cost.png, runs.csv, provenance.json", highlight=False, soft_wrap=True)


def _sweep_event(event: str, spec: JobSpec, outcome: Outcome | None) -> None:
    if event == "start":
        err.print(f"[bold]run {spec.key}[/]" + (f" (from {spec.fork.source})" if spec.fork else ""), highlight=False)
    elif outcome is None:
        return
    elif outcome.status == "error":
        err.print(f"[red]{escape(spec.key)} failed:[/] {escape(outcome.error or '')}", highlight=False, soft_wrap=True)
    else:
        err.print(f"{spec.key}: {outcome.status} in {outcome.seconds:.1f} s", highlight=False)


def _print_fitted(table: Table) -> None:
    """A terminal gets the table fitted to its width; a log file or pipe gets it whole, however wide."""
    width = Measurement.get(out, out.options.update_width(1000), table).maximum
    (out if out.is_terminal or width <= out.width else Console(width=width)).print(table)


def ablation_tables(comparison: Comparison, title: str) -> list[Table]:
    """The runs per variant, then one table per score: mean +- s.e. and the paired difference to the reference.

    Narrow enough for an 80-column terminal: long values wrap at spaces, headers are single words or break
    where they are written on two lines.
    """
    from mtkit.sweep.write import (
        format_at_least,
        format_ci,
        format_cost,
        format_diff,
        format_params,
        format_seconds,
        format_summary,
    )

    failed = any(row.errors for row in comparison.variants)
    summary = Table(title=f"ablation of {title}", header_style="bold")
    numeric = ("trained\nparams", "infer\ntime", "infer\nFLOPs", "seconds")
    for column in ("variant", "status", *numeric, "shared\nphases", *(["error"] if failed else [])):
        summary.add_column(column, justify="right" if column in numeric else "left", overflow="fold")
    for row in comparison.variants:
        cells = [row.variant, row.status, format_params(row.trained_params), format_cost(row.cost), format_cost(row.cost_flops)]
        cells += [format_seconds(row.seconds), ", ".join(row.shared_phases)]
        more = f" (+{len(row.errors) - 1} more)" if len(row.errors) > 1 else ""
        summary.add_row(*cells, *([escape(row.errors[0]) + more if row.errors else ""] if failed else []))
    tables = [summary]
    for metric in comparison.metrics:
        table = Table(title=f"{metric} (diff: paired vs {comparison.reference})", header_style="bold")
        table.add_column("variant", overflow="fold")
        for column in ("mean ± s.e.", "diff", "95% CI", "≥ ref"):
            table.add_column(column, justify="right", overflow="fold")
        for row in comparison.variants:
            paired = row.diffs.get(metric)
            table.add_row(row.variant, format_summary(row.scores.get(metric)), format_diff(paired), format_ci(paired), format_at_least(paired))
        tables.append(table)
    return tables


def ablation_notes(comparison: Comparison) -> list[str]:
    """Dropped keys, shared phases and failed runs, one line each."""
    lines = [f"{escape(row.variant)}: dropped {', '.join(row.dropped)} (not accepted by the swapped type)" for row in comparison.variants if row.dropped]
    lines += [f"shared: {escape(line)}" for line in comparison.shared]
    lines += [f"[red]failed[/] {escape(row.variant)}, {escape(error)}" for row in comparison.variants for error in row.errors]
    return lines


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    task: Annotated[list[str] | None, typer.Option(help="Only these tasks (repeatable).")] = None,
    routing: Annotated[str | None, typer.Option(help="oracle, learned or base (the backbone without adapters); default: the last phase's.")] = None,
    split: Annotated[str, typer.Option(help="test (the held-out split) or validation (needs the datasets' validation_size).")] = "test",
    probe: Annotated[str | None, typer.Option(help="Score this probe of every task that declares it (tasks.X.probes.NAME) instead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip checking the run's files against its manifest.json (for files edited on purpose).")] = False,
) -> None:
    """Re-evaluate a finished run on its held-out splits (or a probe)."""
    from mtkit.rundir.load import evaluate_run

    _quiet()
    scores = guarded(lambda: evaluate_run(run_dir, tasks=task, routing=routing, split=split, probe=probe, verify=not no_verify))
    if as_json:
        print(json.dumps(scores, indent=2))
        return
    out.print(score_table(scores, first="task/probe" if probe else "task"))


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Inputs to predict.")] = None,
    file: Annotated[Path | None, typer.Option(help="Read inputs from this file, one per line.")] = None,
    task: Annotated[str | None, typer.Option(help="Task whose head predicts (default: every task).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip checking the run's files against its manifest.json (for files edited on purpose).")] = False,
) -> None:
    """Predict new inputs with a finished run."""
    from mtkit.rundir.load import predict_texts

    _quiet()
    from mtkit.api.textfile import read_text_file

    def body() -> list[dict[str, Any]]:
        inputs = list(texts or [])
        if file is not None:
            text = read_text_file(file, what="input file (one input per line)", fix="save it as UTF-8")
            inputs += [line for line in text.splitlines() if line.strip()]
        if not inputs:
            raise MtkitError("no inputs; pass texts as arguments or --file FILE")
        return predict_texts(run_dir, inputs, task=task, verify=not no_verify)

    results = guarded(body)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for item in results:
        detected = item.get("detected_task")
        out.print(f"[bold]{escape(item['input'])}[/]" + (f"  (detected task: {detected})" if detected else ""), highlight=False)
        for task_name, pred in item["predictions"].items():
            mark = "*" if task_name == detected else " "
            out.print(f" {mark}{task_name}: {pred['prediction']!r}", highlight=False, markup=False)
            if pred.get("routing"):  # one line of its own: a long dictionary wrapped mid-entry reads badly
                weights = ", ".join(f"{adapter} {weight:.2f}" for adapter, weight in pred["routing"].items())
                out.print(f"     routing: {weights}", highlight=False, markup=False)


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_batch_size: Annotated[int, typer.Option(help="Most inputs one model call serves (1: no batching).")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="How long a batch stays open for requests to join it, from its first request's arrival or the model's freeing, whichever is later.")] = 10.0,
    queue_size: Annotated[int, typer.Option(help="Requests that may wait; beyond them the server answers 503 with Retry-After.")] = 256,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before it is answered 504.")] = 30.0,
    max_inputs: Annotated[int, typer.Option(help="Most inputs (or prompts) in one request.")] = 64,
    max_input_chars: Annotated[int, typer.Option(help="Most characters in one input.")] = 100_000,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body, in bytes.")] = 1_000_000,
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a completion request may ask for.")] = 256,
    threads: Annotated[int | None, typer.Option(help="Threads torch runs the model with (default: torch's choice, one per core).")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Serve as a Ray Serve deployment (pip install 'mtkit[ray-serve]').")] = False,
    replicas: Annotated[int, typer.Option(help="Replicas of the Ray Serve deployment (with --ray).")] = 1,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip checking the run's files against its manifest.json (for files edited on purpose).")] = False,
) -> None:
    """Serve a finished run over HTTP: /predict, OpenAI-compatible completions, /health, /metrics (docs/serving.md)."""
    from mtkit.serve import ServeSettings
    from mtkit.serve.run import build_app, require, serve_local, serve_ray

    settings = ServeSettings(max_batch_size, max_wait_ms, queue_size, timeout, max_inputs, max_input_chars, max_body_bytes, max_tokens, threads)
    guarded(lambda: require(ray=ray))
    _quiet()
    if ray:
        guarded(lambda: serve_ray(run_dir, settings, host=host, port=port, replicas=replicas, verify=not no_verify))
        return
    server = guarded(lambda: build_app(run_dir, settings, verify=not no_verify))
    err.print(
        f"serving {run_dir} on http://{host}:{port} (batches of up to {max_batch_size} inputs, {max_wait_ms:g} ms wait, {settings.torch_threads()} torch threads)",
        highlight=False, soft_wrap=True,
    )
    serve_local(server, host, port)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; the last checkpoint is intact (resume with --resume)")
        sys.exit(130)


# --- plugin authoring ------------------------------------------------------------------------


@app.command("new-plugin")
def new_plugin_command(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. my-gate: recipe type my_gate, package mtkit-my-gate.")],
    kind: Annotated[str, typer.Option(help="Component kind: backbone, adapter, combiner, head, scheduler, dataset, metric or balancer.")] = "adapter",
    directory: Annotated[Path, typer.Option("--dir", help="Folder to create the package folder in.")] = Path("."),
) -> None:
    """Write a pip-installable plugin package with one working example component, tests and a README."""
    from mtkit.cli.scaffold import new_plugin, plugin_names

    target = guarded(lambda: new_plugin(name, kind, directory))
    names = plugin_names(name, kind)
    out.print(f"created {target}: {kind} {names.type_name!r} (class {names.module}.{kind}.{names.class_name})", highlight=False, soft_wrap=True)
    out.print(f"next: pip install -e {target}  &&  mtkit list-components --kind {kind}  &&  pytest {target}", highlight=False, soft_wrap=True)


# --- export (adapters helper) -------------------------------------------------------------------


@app.command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write one folder per exported adapter (peft) or task (hf).")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="peft: a PEFT LoRA folder per adapter, with its task's head in modules_to_save; "
            "hf: a merged transformers model per task (adapter folded in, head included).",
        ),
    ] = "peft",
    adapter: Annotated[list[str] | None, typer.Option("--adapter", help="Adapter id to export (repeatable; default: every exportable one).")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip checking the run's files against its manifest.json (for files edited on purpose).")] = False,
) -> None:
    """Export a run for PEFT (AutoPeftModelFor... loads each folder) or transformers alone (merged models)."""
    from mtkit.rundir.export import export_run

    _quiet()
    folders = guarded(lambda: export_run(run_dir, out_dir, format, adapter, verify=not no_verify))
    for aid, folder in folders.items():
        out.print(f"{aid}: {folder}", highlight=False)
