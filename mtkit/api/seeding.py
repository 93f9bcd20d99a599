"""Seeds: every component starts from its own generator, seeded by (run seed, its recipe key path).

Swapping, adding or removing one component then never changes how another starts, which is what makes the
variants of an ablation comparable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["component_seed", "seeded"]


def component_seed(run_seed: int, path: str) -> int:
    """A 63-bit seed from the run seed and a component's key path (`tasks.topic.head`), stable across processes."""
    digest = hashlib.sha256(f"{run_seed}:{path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by `seed`, restoring its state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
