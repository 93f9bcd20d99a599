"""What a sweep varies: named sets of recipe overrides (`--swap`, `--variant`) and the seeds (`--seeds`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mtkit.api.errors import MtkitError

__all__ = ["Variant", "parse_seeds", "parse_swap", "parse_variant"]


@dataclass(frozen=True)
class Variant:
    """One arm of a sweep: a name and the `key.path=value` overrides that make it.

    Attributes:
        name: Shown in the comparison and used as the variant's folder name.
        overrides: Applied after the sweep-wide `--set` overrides.
        origin: Where the overrides came from (`--swap` or `--variant`), named in errors.
    """

    name: str
    overrides: tuple[str, ...]
    origin: str = "--variant"


_NAME = re.compile(r"^[\w.+-]+$")


def _checked(name: str, spec: str, option: str) -> str:
    if not _NAME.match(name) or name.startswith("."):
        raise MtkitError(
            f"{option} {spec!r}: variant name {name!r} must be letters, digits and . _ + - (it names a folder); "
            "name the variant with --variant 'name: key=value'"
        )
    return name


def parse_swap(spec: str) -> list[Variant]:
    """`combiner.type=router,weighted` -> one variant per value, named by the value."""
    key, sep, values = spec.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise MtkitError(f"--swap {spec!r} must look like key.path=value1,value2")
    return [
        Variant(_checked(value.strip(), spec, "--swap"), (f"{key.strip()}={value.strip()}",), "--swap")
        for value in values.split(",")
        if value.strip()
    ]


def parse_variant(spec: str) -> Variant:
    """`single_lora: tasks.a.adapter=shared; tasks.b.adapter=shared` -> a named set of overrides."""
    name, sep, body = spec.partition(":")
    overrides = tuple(part.strip() for part in body.split(";") if part.strip())
    if not sep or not name.strip() or not overrides:
        raise MtkitError(f"--variant {spec!r} must look like 'name: key.path=value; key.path=value'")
    return Variant(_checked(name.strip(), spec, "--variant"), overrides, "--variant")


def parse_seeds(spec: str) -> list[int]:
    """`0-4` -> [0, 1, 2, 3, 4]; `0,3,7` and mixtures such as `0-2,9` work too (order kept, repeats dropped)."""
    seeds: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise MtkitError(f"--seeds {spec!r}: {part!r} is not a seed or an ascending range; use e.g. 0-4 or 0,3,7")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        seeds += [s for s in range(low, high + 1) if s not in seeds]
    return seeds
