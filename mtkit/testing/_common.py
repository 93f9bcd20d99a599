"""Checks every component kind shares: its config class and its ClassVars."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from mtkit.api.config import ComponentConfig

__all__ = ["check_config", "check_state_dict_round_trip"]


def check_config(cls: type, kind: str, params: Mapping[str, Any]) -> ComponentConfig:
    """The class's ClassVars are set, its minimal params validate, an unknown key is rejected,
    every field is described and the validated config is frozen. Returns the config."""
    from mtkit.api.kinds import INTERFACES

    interface = INTERFACES[kind]
    assert isinstance(cls, type) and issubclass(cls, interface), f"{cls!r} is not a subclass of mtkit.{interface.__name__}"
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    assert not missing, f"{cls.__name__} does not implement {', '.join(missing)}"
    name = getattr(cls, "name", None)
    assert isinstance(name, str) and name.isidentifier() and name == name.lower(), (
        f"{cls.__name__}.name must be a lowercase snake_case recipe type, got {name!r}"
    )
    config_class = getattr(cls, "config_class", None)
    assert isinstance(config_class, type) and issubclass(config_class, ComponentConfig), (
        f"{cls.__name__}.config_class must subclass mtkit.ComponentConfig, got {config_class!r}"
    )
    undescribed = sorted(f for f, info in config_class.model_fields.items() if not (info.description or "").strip())
    assert not undescribed, f"{config_class.__name__}: fields without a description: {', '.join(undescribed)}"
    try:
        config = config_class.model_validate(dict(params))
    except pydantic.ValidationError as exc:
        raise AssertionError(f"{config_class.__name__} rejects the minimal params {dict(params)!r}: {exc}") from None
    try:
        config_class.model_validate({**params, "surely_not_a_field": 1})
    except pydantic.ValidationError:
        pass
    else:
        raise AssertionError(f"{config_class.__name__} accepts an unknown key; keep ComponentConfig's extra='forbid'")
    if config_class.model_fields:
        field = next(iter(config_class.model_fields))
        try:
            setattr(config, field, getattr(config, field))
        except (pydantic.ValidationError, TypeError, AttributeError):
            pass
        else:
            raise AssertionError(f"{config_class.__name__} is not frozen; keep ComponentConfig's frozen=True")
    # A config survives its own JSON (run directories store configs as JSON).
    assert config_class.model_validate_json(config.model_dump_json()) == config, f"{config_class.__name__} does not round-trip through JSON"
    return config


def check_state_dict_round_trip(make: Callable[[int], Any], run: Callable[[Any], Any], first: Any = None) -> None:
    """A fresh instance loading another's state dict (strictly) computes the same output.

    `make(seed)` builds the module from a seed, `run` returns a tensor output; `first`, if given,
    is an instance already built (saves building one when that is slow).
    """
    import torch

    if first is None:
        torch.manual_seed(1)
        first = make(1)
    first.eval()
    torch.manual_seed(2)
    second = make(2).eval()
    state = {k: v.clone() for k, v in first.state_dict().items()}
    result = second.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    with torch.no_grad():
        a, b = run(first), run(second)
    assert torch.allclose(a, b, atol=1e-5), "outputs differ after load_state_dict: some state is not in state_dict()"
