"""Built-in task schedulers."""

from __future__ import annotations

from mtkit import Register, hookimpl

from . import config

MTKIT_PLUGIN_API = 2

_SCHEDULERS = {
    "uniform": ("UniformScheduler", config.UniformSchedulerConfig),
    "proportional": ("ProportionalScheduler", config.ProportionalSchedulerConfig),
    "temperature": ("TemperatureScheduler", config.TemperatureSchedulerConfig),
    "round_robin": ("RoundRobinScheduler", config.RoundRobinSchedulerConfig),
    "curriculum": ("CurriculumScheduler", config.CurriculumSchedulerConfig),
}


@hookimpl
def mtkit_register_components(register: Register) -> None:
    for name, (cls, config_class) in _SCHEDULERS.items():
        register(f"mtkit_schedulers.schedulers:{cls}", kind="scheduler", name=name, config=config_class)
