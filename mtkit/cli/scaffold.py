"""`mtkit new-plugin`: write a pip-installable plugin package with one working example component.

The package follows the built-ins' layout: a torch-free config module, the component in its own
module, the hookimpl registering it lazily in __init__.py, and tests that run mtkit's contract
suite for its kind. Templates are plain files in mtkit/templates/ with $-placeholders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from mtkit.api.config import KINDS
from mtkit.api.errors import MtkitError
from mtkit.api.plugins import PLUGIN_API_VERSION

__all__ = ["PluginNames", "new_plugin", "plugin_names"]

_SUFFIX = {kind: kind.capitalize() for kind in KINDS}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class PluginNames:
    """Every name the scaffold derives from the one the user gives."""

    type_name: str  # the recipe `type`: my_gate
    distribution: str  # the pip name: mtkit-my-gate
    module: str  # the import name: mtkit_my_gate
    class_name: str  # MyGateCombiner
    kind: str


def plugin_names(name: str, kind: str) -> PluginNames:
    """Derive the names from NAME (`my-gate`, `my_gate` or `mtkit-my-gate`).

    Raises:
        MtkitError: for an unknown kind or a name that cannot become a Python identifier.
    """
    if kind not in KINDS:
        raise MtkitError(f"--kind {kind!r} is not a component kind (known: {', '.join(sorted(KINDS))})")
    snake = re.sub(r"[-.\s]+", "_", name.strip()).lower()
    snake = re.sub(r"^mtkit_", "", snake)
    if not _NAME.match(snake):
        raise MtkitError(
            f"plugin name {name!r} must start with a letter and hold only letters, digits, '-' and '_' "
            "(it becomes the recipe type, e.g. 'my-gate' -> type 'my_gate', package mtkit-my-gate)"
        )
    camel = "".join(part.capitalize() for part in snake.split("_") if part)
    return PluginNames(snake, "mtkit-" + snake.replace("_", "-"), "mtkit_" + snake, camel + _SUFFIX[kind], kind)


def _render(template: str, values: dict[str, str]) -> str:
    text = resources.files("mtkit.cli.templates").joinpath(template).read_text(encoding="utf-8")
    return Template(text).substitute(values)


def new_plugin(name: str, kind: str, parent: Path | str = ".", *, check_registered: bool = True) -> Path:
    """Write the plugin package folder `<parent>/<distribution>` and return its path.

    Raises:
        MtkitError: bad name or kind, a name already registered for the kind, or an existing folder.
    """
    names = plugin_names(name, kind)
    target = Path(parent) / names.distribution
    if target.exists():
        raise MtkitError(f"{target}: already exists; choose another plugin name or --dir, or remove the folder")
    if check_registered:
        from mtkit.api.registry import load_registry

        registry = load_registry()
        if names.type_name in registry.names(kind):
            owner = registry.get(kind, names.type_name).plugin.label()
            raise MtkitError(
                f"{kind} {names.type_name!r} is already registered by plugin {owner}; a second one would be "
                "refused at load time, so choose another name"
            )
    from mtkit import __version__

    values = {
        "type_name": names.type_name,
        "distribution": names.distribution,
        "module": names.module,
        "class_name": names.class_name,
        "kind": kind,
        "kind_title": _SUFFIX[kind],
        "api": str(PLUGIN_API_VERSION),
        "mtkit_version": __version__,
    }
    files = {
        "pyproject.toml": _render("pyproject.toml.tmpl", values),
        "README.md": _render("README.md.tmpl", values) + _render(f"{kind}/usage.md.tmpl", values),
        f"src/{names.module}/__init__.py": _render("init.py.tmpl", values),
        f"src/{names.module}/config.py": _render(f"{kind}/config.py.tmpl", values),
        f"src/{names.module}/{kind}.py": _render(f"{kind}/component.py.tmpl", values),
        f"tests/test_{names.type_name}.py": _render(f"{kind}/test.py.tmpl", values),
        ".gitignore": "__pycache__/\n*.egg-info/\nbuild/\ndist/\n",
    }
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
