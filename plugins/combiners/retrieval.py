"""`retrieval`: zero-shot routing by content (LoraRetriever, Zhao et al. 2024).

Each adapter is described by the mean embedding of a few of its own tasks' training inputs, or of the example inputs
in a file given for it (`example_files`: a library imported without tasks), computed in a phase with
`fit_combiner = true` and kept in a buffer that checkpoints carry. A sample's embedding (its pooled representation
from `source`) scores each described adapter by cosine; the sample goes to the top_k, weighted by a softmax of
their cosines over the temperature. The routing is decided once per forward pass and used at every site; top-k
weights are sparse, so with a large library each sample's k adapters are gathered and the cost grows with k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit import Combiner, CombinerSetup, FitData, ForwardContext, MtkitError

from ._routing import softmax_top_k
from .config import RetrievalCombinerConfig


class RetrievalCombiner(Combiner):
    """Routes each sample to the adapters whose description (mean embedding of their tasks' inputs) is nearest its own."""

    name = "retrieval"
    config_class = RetrievalCombinerConfig
    config: RetrievalCombinerConfig

    def __init__(self, config: RetrievalCombinerConfig, *, setup: CombinerSetup) -> None:
        super().__init__(config, setup=setup)
        unknown = sorted(set(config.example_files) - set(setup.adapter_names))
        if unknown:
            raise MtkitError(
                f"combiner.example_files: {', '.join(map(repr, unknown))} is not an adapter of this recipe "
                f"(adapters: {', '.join(setup.adapter_names) or 'none'}); key each file by the adapter it describes"
            )
        k = max(1, self.num_adapters)
        self.temperature.fill_(config.temperature)
        self.register_buffer("descriptions", torch.zeros(k, setup.hidden_size))  # (K, D) unit mean embeddings
        self.register_buffer("described", torch.zeros(k, dtype=torch.bool))  # (K,) adapters with a description
        self._weights: Tensor | None = None
        self._collected: list[Tensor] | None = None  # while describing: each forward pass's embeddings

    def representation_sources(self) -> set[str]:
        return {self.config.source}

    def begin(self, ctx: ForwardContext) -> None:
        self._weights = None
        self._take(ctx)

    def _take(self, ctx: ForwardContext) -> bool:
        """Decide (or, while describing, collect) from the representation once the pass has it; whether it has."""
        if self._weights is not None:
            return True
        representation = ctx.representation(self.config.source)
        if representation is None:
            return False
        if self._collected is not None:
            self._collected.append(F.normalize(representation.float(), dim=-1))
            self._weights = representation.new_zeros(representation.shape[0], max(1, self.num_adapters))  # no adapter while describing
        else:
            self._weights = self.route(representation)
        return True

    def route(self, representation: Tensor) -> Tensor:
        """(B, D) representation -> (B, K) weights: softmax over the top_k cosines with the described adapters."""
        described = self.described
        if not bool(described.any()):
            described = torch.ones_like(described)  # before `fit`: every (zero) description ties
        cosines = F.normalize(representation.float(), dim=-1) @ self.descriptions.T  # (B, K)
        cosines = cosines.masked_fill(~described, float("-inf"))
        return softmax_top_k(cosines, min(self.config.top_k, int(described.sum())), self.temperature)

    def weights(self, site: str, x: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor | None:
        if not self._take(ctx):
            return None  # a site before layer N of a `layer:N` source: no adapter applies there
        return self._weights

    @torch.no_grad()
    def fit(self, data: FitData) -> dict[str, Any]:
        """Describe each adapter by the mean unit embedding of the inputs in its example file, else of up to `examples`
        training inputs of each of its tasks."""
        means: dict[int, Tensor] = {}
        embedded: dict[int, Tensor] = {}
        for column, name in enumerate(self.adapter_names):
            path = self.config.example_files.get(name)
            pieces = [] if path else [p for task in data.adapter_tasks.get(name, ()) for p in data.batches(task, self.config.examples)]
            if not path and not pieces:
                continue
            self._collected = []
            try:
                if path:
                    data.forward_texts(example_inputs(path, f"combiner.example_files.{name}"))
                else:
                    data.loss(pieces)
                embedded[column] = torch.cat(self._collected)
            finally:
                self._collected = None
            means[column] = F.normalize(embedded[column].mean(0), dim=-1)
        if not means:
            raise MtkitError(
                f"combiner 'retrieval': no adapter serves a task with training examples, so none can be described by its inputs; "
                f"route tasks to the library's adapters (tasks.TASK.adapter) before phase {data.phase!r}, or give "
                f"example inputs per adapter (combiner.example_files)"
            )
        self.descriptions.zero_()
        self.described.zero_()
        for column, mean in means.items():
            self.descriptions[column] = mean.to(self.descriptions)
            self.described[column] = True
        # How well the descriptions tell their own examples apart: a check that the source separates the tasks at all.
        accuracy = {}
        for column, embeddings in embedded.items():
            chosen = self.route(embeddings).argmax(-1)
            accuracy[self.adapter_names[column]] = round(float((chosen == column).float().mean()), 4)
        undescribed = [n for c, n in enumerate(self.adapter_names) if c not in means]
        return {
            "examples": {self.adapter_names[c]: int(e.shape[0]) for c, e in embedded.items()},
            **({"example_files": dict(self.config.example_files)} if self.config.example_files else {}),
            "own_examples_routed_home": accuracy,
            **({"undescribed": ", ".join(undescribed)} if undescribed else {}),
        }


def example_inputs(path: str, key: str) -> list[str]:
    """The non-blank lines of an example file, or an MtkitError naming `key` and the fix. Read when the adapters are
    described (the fit phase), not when the recipe is validated: a finished run keeps its descriptions in its weights
    and reloads without the files."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MtkitError(f"{key}: {path!r} is not a file (relative paths start at the working directory {Path.cwd()}); give a text file with one example input per line")
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as error:
        raise MtkitError(f"{key}: {path!r} is not UTF-8 text (byte {error.start}); save it as UTF-8, one example input per line") from None
    inputs = [line for line in lines if line]
    if not inputs:
        raise MtkitError(f"{key}: {path!r} has no example input; write one input per line")
    return inputs

