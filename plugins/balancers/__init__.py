"""Built-in balancers: loss weighting (static, uncertainty, dwa, gradnorm) and gradient combination through TorchJD
(pcgrad, cagrad, imtl_g, nash_mtl, aligned_mtl, upgrad, mgda)."""

from __future__ import annotations

from mtkit import Register, hookimpl

from . import config

MTKIT_PLUGIN_API = 2

_BALANCERS = {
    "static": ("weighting:StaticBalancer", config.StaticBalancerConfig),
    "uncertainty": ("weighting:UncertaintyBalancer", config.UncertaintyBalancerConfig),
    "dwa": ("weighting:DwaBalancer", config.DwaBalancerConfig),
    "gradnorm": ("weighting:GradnormBalancer", config.GradnormBalancerConfig),
    "pcgrad": ("gradients:PcgradBalancer", config.PcgradBalancerConfig),
    "cagrad": ("gradients:CagradBalancer", config.CagradBalancerConfig),
    "imtl_g": ("gradients:ImtlGBalancer", config.ImtlGBalancerConfig),
    "nash_mtl": ("gradients:NashMtlBalancer", config.NashMtlBalancerConfig),
    "aligned_mtl": ("gradients:AlignedMtlBalancer", config.AlignedMtlBalancerConfig),
    "upgrad": ("gradients:UpgradBalancer", config.UpgradBalancerConfig),
    "mgda": ("gradients:MgdaBalancer", config.MgdaBalancerConfig),
}


@hookimpl
def mtkit_register_components(register: Register) -> None:
    for name, (target, config_class) in _BALANCERS.items():
        register(f"mtkit_balancers.{target}", kind="balancer", name=name, config=config_class)
