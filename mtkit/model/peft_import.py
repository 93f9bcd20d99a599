"""Heads and checks that come with adapters imported from PEFT folders (`from_peft`).

An adapter built from a PEFT folder keeps what the folder said besides its LoRA weights (`peft_source`: the
config, the task model's base prefix and the head PEFT saved through modules_to_save). Once the backbone and the
heads exist, the folder's config is checked against the backbone and its head loads into each task it serves.
"""

from __future__ import annotations

from collections.abc import Mapping

from mtkit.api.adapter import Adapter
from mtkit.api.errors import MtkitError
from mtkit.api.interfaces import Backbone, Head, HfModelBackbone
from mtkit.api.peft_format import LoraTensors, PeftHead, check_base_model

__all__ = ["import_peft_parts"]


def import_peft_parts(aid: str, adapter: Adapter, backbone: Backbone, heads: Mapping[str, Head], task_adapter: Mapping[str, str | None]) -> None:
    """Check adapter `aid`, if it came from a PEFT folder, against the backbone and load its saved head into the
    tasks it serves (oracle routing's task -> adapter table).

    Raises:
        MtkitError: the folder was saved on another base model, or its head does not fit a task's head.
    """
    source = getattr(adapter, "peft_source", None)
    if not isinstance(source, LoraTensors) or not isinstance(backbone, HfModelBackbone):
        return
    where = f"from_peft {getattr(adapter.config, 'from_peft', aid)!r}"
    check_base_model(source.config, source.prefix, backbone, where)
    if source.head:
        _load_head(aid, source, heads, task_adapter, where)


def _load_head(aid: str, source: LoraTensors, heads: Mapping[str, Head], task_adapter: Mapping[str, str | None], where: str) -> None:
    # A head goes to the tasks routed to its adapter; a library composed for other tasks leaves its heads unused.
    tasks = [task for task, served in task_adapter.items() if served == aid]
    prefix = f"{source.prefix}." if source.prefix else ""
    for task in tasks:
        head = heads[task]
        if not isinstance(head, PeftHead):
            first = sorted(source.head)[0]
            raise MtkitError(
                f"{where}: tensor {first!r} is a task head PEFT saved through modules_to_save, which task {task!r}'s "
                f"head type {type(head).name!r} cannot hold; use a head type that can (classification, "
                "token_classification, span_qa) or re-save the adapter without modules_to_save"
            )
        try:
            head.load_peft_head(source.head, prefix)
        except MtkitError as exc:
            raise MtkitError(f"{where}: tasks.{task}.head: {exc}") from None
