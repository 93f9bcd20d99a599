"""`layer_gates` against PEFT's X-LoRA on SmolLM2-135M-Instruct: the same LoRA library, the same classifier weights.

PEFT's X-LoRA loads causal language models only, so this comparison runs on the packaged SmolLM2 rather than the
MiniLM encoder of the other sections. N random LoRAs (rank 8 on q_proj and v_proj) are saved by PEFT and loaded by
both: X-LoRA with a one-layer classifier and per-layer scalings, mtkit's `layer_gates` with the same settings
(dense, per site, one layer), its classifier weights copied from X-LoRA's. Both run two passes per forward (X-LoRA's
scaling pass, layer_gates' frozen pass); the timed call is one forward over a batch of token ids, against the bare
backbone and one unmerged mtkit LoRA.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig, XLoraConfig, get_peft_model

from mtkit import TaskInfo, load_registry
from mtkit.model.build import build_model
from mtkit.recipe.resolve import resolve

BACKBONE = {"type": "hf_causal_lm", "model": "SmolLM2-135M-Instruct"}
TARGETS = ["q_proj", "v_proj"]


def _linears(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def xlora_cases(n: int, batch: int, length: int, workdir: Path) -> dict[str, Callable[[], object]]:
    """Forward passes to time: bare SmolLM2, one mtkit LoRA, PEFT X-LoRA over N LoRAs, mtkit layer_gates over the same."""
    registry = load_registry()

    def model(recipe: dict[str, object]):  # type: ignore[no-untyped-def]
        full = {
            "backbone": dict(BACKBONE),
            "tasks": {"gen": {"dataset": {"type": "rotten_tomatoes"}, "head": {"type": "classification"}}},
            "phases": [{"name": "p", "steps": 0, "routing": "learned"}],
            **recipe,
        }
        return build_model(resolve(full, registry, "xlora_case"), {"gen": TaskInfo("gen", 0, ("a", "b"))}).eval()

    one = model({"adapters": {"gen": {"type": "lora", "rank": 8, "alpha": 16, "target_modules": TARGETS, "init": "random"}}, "combiner": {"type": "oracle"}})
    cls = registry.component_class("backbone", BACKBONE["type"])
    base = cls(cls.config_class.model_validate({"model": BACKBONE["model"]})).model.eval()  # the bare transformers model
    generator = torch.Generator().manual_seed(0)
    library = workdir / "library"
    for i in range(n):
        peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        peft_model.save_pretrained(library / f"lora{i:03d}")
    config = XLoraConfig(
        task_type="CAUSAL_LM", hidden_size=base.config.hidden_size, xlora_dropout_p=0.0, layerwise_scalings=True, xlora_depth=1,
        adapters={str(i): str(library / f"lora{i:03d}") for i in range(n)},
    )
    xlora_base = copy.deepcopy(base)
    xlora_base.config.use_cache = False
    xlora = get_peft_model(xlora_base, config).eval()
    gates = model({"libraries": {"lib": {"type": "lora", "from_peft": str(library)}}, "combiner": {"type": "layer_gates", "dropout": 0.0, "per_site": True, "num_layers": 1}})
    gates.backbone.model.load_state_dict(base.state_dict())
    with torch.no_grad():
        for ours, theirs in zip(_linears(gates.combiner.classifier), _linears(xlora.base_model.internal_xlora_classifier), strict=True):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
    ids = torch.randint(1000, base.config.vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    zeros = torch.zeros(batch, dtype=torch.long)

    def ours_gates() -> torch.Tensor:
        with gates.use_combiner("combiner"):
            return gates.run_backbone(ids, mask, zeros).hidden


    # Outputs agree before anything is timed: the comparison is between two implementations of one computation.
    theirs = xlora(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    mine = ours_gates()
    if not torch.allclose(mine, theirs, atol=1e-4, rtol=0):
        raise AssertionError(f"layer_gates and X-LoRA disagree by {float((mine - theirs).abs().max()):.2e}")
    # Every timed call ends in logits over the vocabulary, as PEFT's causal-LM forward does.
    return {
        "bare backbone": lambda: base(input_ids=ids, attention_mask=mask, use_cache=False),
        "mtkit 1 LoRA (unmerged)": lambda: base.lm_head(one.run_backbone(ids, mask, zeros).hidden),
        f"N={n} peft X-LoRA": lambda: xlora(input_ids=ids, attention_mask=mask),
        f"N={n} mtkit layer_gates": lambda: base.lm_head(ours_gates()),
    }

