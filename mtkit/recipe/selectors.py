"""The grammar of parameter selectors (`train`, `freeze`): parsed here once, for validation and for the trainer.

Importing this never imports torch: `mtkit validate` checks selectors without building a model.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["SELECTOR_HELP", "Selector", "heads_only", "parse_selector", "parse_selectors", "selected_tasks", "selector_problems"]

SELECTOR_HELP = (
    "adapters, adapters.<id>, combiner, heads, heads.<task>, backbone, backbone.embeddings, "
    "backbone.layers.<i> or backbone.layers.<i>-<j>"
)

Part = Literal["adapters", "heads", "combiner", "backbone"]


@dataclass(frozen=True)
class Selector:
    """One parsed selector: a part of the model, optionally one adapter, head, or a range of backbone layers."""

    text: str
    part: Part
    name: str | None = None  # adapters.<id> / heads.<task>
    layers: tuple[int, int] | None = None  # backbone.layers.<i>[-<j>], inclusive
    embeddings: bool = False  # backbone.embeddings


def parse_selector(text: str) -> Selector:
    """Parse one selector.

    Raises:
        ValueError: the text is not a selector; the message says what the grammar allows.
    """
    head, _, rest = text.partition(".")
    if head in ("adapters", "heads") and (not rest or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rest)):
        return Selector(text, head, name=rest or None)  # type: ignore[arg-type]
    if head == "combiner" and not rest:
        return Selector(text, "combiner")
    if head == "backbone":
        if not rest:
            return Selector(text, "backbone")
        if rest == "embeddings":
            return Selector(text, "backbone", embeddings=True)
        match = re.fullmatch(r"layers\.(\d+)(?:-(\d+))?", rest)
        if match:
            lo, hi = int(match[1]), int(match[2] or match[1])
            if hi < lo:
                raise ValueError(f"selector {text!r} names layers {lo} down to {hi}; write the range low-high (backbone.layers.{hi}-{lo})")
            return Selector(text, "backbone", layers=(lo, hi))
    raise ValueError(f"selector {text!r} is not one of: {SELECTOR_HELP}")


def parse_selectors(texts: Sequence[str]) -> tuple[Selector, ...]:
    """Parse selectors that validation has already accepted."""
    return tuple(parse_selector(text) for text in texts)


def heads_only(selectors: Sequence[str | Selector]) -> bool:
    """Whether the selectors name heads and nothing else."""
    return all((s if isinstance(s, Selector) else parse_selector(s)).part == "heads" for s in selectors)


def selector_problems(selectors: Sequence[str], adapters: Collection[str], tasks: Collection[str]) -> list[str]:
    """What is wrong with each selector, given the recipe's adapter ids and task names."""
    problems = []
    for text in selectors:
        try:
            sel = parse_selector(text)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        known = adapters if sel.part == "adapters" else tasks if sel.part == "heads" else None
        if known is not None and sel.name is not None and sel.name not in known:
            kind = "adapter" if sel.part == "adapters" else "task"
            listed = ", ".join(sorted(known)) or "none"
            problems.append(f"selector {text!r} names no {kind} of the recipe (known: {listed})")
    return problems


def selected_tasks(selectors: Sequence[str | Selector], tasks: Sequence[str]) -> set[str]:
    """The tasks whose heads the selectors name (`heads` names every task)."""
    named: set[str] = set()
    for item in selectors:
        sel = item if isinstance(item, Selector) else parse_selector(item)
        if sel.part == "heads":
            named |= {sel.name} if sel.name else set(tasks)
    return named
