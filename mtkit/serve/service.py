"""A run loaded once, answering batches: what `mtkit predict --json` answers, and text completions by model name.

The names a completion request may give as `model`: a text-generating task (its own adapter, as under oracle
routing), an adapter (that adapter, with the first text-generating task's head), or `auto` (the run's learned
combiner chooses the adapters for each request from its input; only for runs whose last phase routes learned).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtkit.api.combiner import RoutesByTask
from mtkit.api.errors import MtkitError
from mtkit.recipe.resolve import routing_path
from mtkit.recipe.schema import LEARNED_ROUTING, ORACLE_ROUTING
from mtkit.rundir.load import LoadedRun, load_run, predict_loaded

__all__ = ["AUTO", "Generation", "ServeSettings", "Service"]

AUTO = "auto"


@dataclass(frozen=True)
class ServeSettings:
    """Batching, queueing and request limits of one server (the `mtkit serve` options)."""

    max_batch_size: int = 32
    max_wait_ms: float = 10.0
    queue_size: int = 256
    timeout_s: float = 30.0
    max_inputs: int = 64
    max_input_chars: int = 100_000
    max_body_bytes: int = 1_000_000
    max_tokens: int = 256
    threads: int | None = None  # torch threads for the model (None: torch's default)

    def torch_threads(self) -> int:
        """The threads torch runs the model with: `threads`, else torch's default (set with `apply_threads`)."""
        import torch

        return self.threads if self.threads is not None else torch.get_num_threads()

    def apply_threads(self) -> None:
        import torch

        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def check(self) -> None:
        """An MtkitError naming the first option out of range."""
        for option, value, low in (
            ("--max-batch-size", self.max_batch_size, 1), ("--queue-size", self.queue_size, 1), ("--max-inputs", self.max_inputs, 1),
            ("--max-input-chars", self.max_input_chars, 1), ("--max-body-bytes", self.max_body_bytes, 64), ("--max-tokens", self.max_tokens, 1),
            ("--threads", 1 if self.threads is None else self.threads, 1),
        ):
            if value < low:
                raise MtkitError(f"{option} {value}: must be at least {low}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise MtkitError(f"--max-wait-ms {self.max_wait_ms} / --timeout {self.timeout_s}: the wait must be >= 0 and the timeout > 0 seconds")


@dataclass(frozen=True)
class Generation:
    """How a batch of completions is generated (requests run in one batch only when these are equal)."""

    task: str
    routing: str
    adapter: str | None = None  # None: the task's own adapter under oracle routing
    max_tokens: int | None = None  # None: the head's max_new_tokens


class Service:
    """The model side of the server; every method but `run_batch` is cheap and may run on the event loop."""

    def __init__(self, loaded: LoadedRun) -> None:
        self.loaded = loaded
        model, recipe = loaded.model, loaded.recipe
        self.tasks = list(recipe.tasks)
        self.adapters = list(model.adapter_names)
        self.routing = recipe.phases[-1].routing  # the label of the run's last phase (oracle or learned)
        self.learned = not loaded.resolved.phases[-1].routes_by_task  # whether its combiner decides from the input
        self.generative = [t for t in self.tasks if model.backbone.generative and "max_new_tokens" in type(model.heads[t].config).model_fields]
        self.tokenizer = model.backbone.tokenizer
        self.longest = max(recipe.tasks[t].max_length or recipe.run.max_length for t in self.tasks)  # tokens a head keeps

    @classmethod
    def open(cls, run_dir: str | Path, *, verify: bool = True) -> Service:
        """Load a run directory once (its files checked against its manifest unless `verify` is False)."""
        return cls(load_run(run_dir, verify=verify))

    @property
    def model_names(self) -> list[str]:
        """What `GET /v1/models` lists: `auto` (learned runs), the text-generating tasks, then the adapters."""
        if not self.generative:
            return []
        names = ([AUTO] if self.learned else []) + self.generative
        return names + [a for a in self.adapters if a not in names]

    def generation(self, model: str, max_tokens: int | None) -> Generation:
        """The generation a completion request's `model` names; LookupError when it names none."""
        if model not in self.model_names:
            raise LookupError(model)
        if model == AUTO:
            return Generation(self.generative[0], LEARNED_ROUTING, None, max_tokens)
        if model in self.generative:
            return Generation(model, ORACLE_ROUTING, None, max_tokens)
        return Generation(self.generative[0], ORACLE_ROUTING, model, max_tokens)

    def max_new_tokens(self, task: str) -> int:
        return int(self.loaded.model.heads[task].config.max_new_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def run_batch(self, key: Hashable, texts: Sequence[str], tasks: Sequence[str | None]) -> list[dict[str, Any]]:
        """`predict --json` entries for a batch of /predict inputs (key None) or of completions, in one model call per
        group of inputs of similar length (so that a long input does not pad every short one to its length)."""
        answers: list[dict[str, Any]] = [{} for _ in texts]
        for rows in self._length_groups(texts):
            chunk = [texts[i] for i in rows]
            if key is None:
                found = predict_loaded(self.loaded, chunk, [tasks[i] for i in rows])
            else:
                assert isinstance(key, Generation), key
                with self._generating(key):
                    found = predict_loaded(self.loaded, chunk, [key.task] * len(chunk), routing=key.routing)
            for i, answer in zip(rows, found, strict=True):
                answers[i] = answer
        return answers

    def _length_groups(self, texts: Sequence[str]) -> list[list[int]]:
        """Indices of `texts` by token count (as the heads cut them), in groups whose longest pads the shortest by at
        most half its length (or 8 tokens)."""
        if len(texts) == 1:
            return [[0]]
        encoded = self.tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.longest)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        groups: list[list[int]] = []
        for i in order:
            size = len(encoded[i])
            if groups and size <= max(1.5 * len(encoded[groups[-1][0]]), len(encoded[groups[-1][0]]) + 8):
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    @contextmanager
    def _generating(self, key: Generation) -> Iterator[None]:
        """The task's head set to the request's token budget and, for an adapter by name, routed to that adapter."""
        model = self.loaded.model
        oracle = model.combiners[routing_path(ORACLE_ROUTING)]
        assert isinstance(oracle, RoutesByTask)
        head, mapping = model.heads[key.task], oracle.task_adapters()
        config = head.config
        if key.max_tokens is not None:
            head.config = config.model_copy(update={"max_new_tokens": key.max_tokens})
        if key.adapter is not None:
            oracle.route_tasks({**mapping, key.task: key.adapter})
        try:
            yield
        finally:
            head.config = config
            oracle.route_tasks(mapping)
