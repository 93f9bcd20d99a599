"""Batched generation (left padding, KV cache, per-row stopping) equals one-prompt-at-a-time generation, token for
token, in a batch that mixes tasks: under oracle routing over two LoRAs and under a learned router."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from mtkit import Registry, TaskInfo
from mtkit.model.build import build_model
from mtkit.model.multitask import MultiTaskModel
from mtkit.recipe.resolve import evaluation_path, resolve, routing_path
from tests.conftest import TINY_LLAMA, count_calls

PROMPTS = [
    ("news", "Shares in the carmaker fell sharply after a profit warning on Monday."),
    ("verse", "In the beginning"),
    ("verse", "And God said, Let there be light: and there was light, and it was good."),
    ("news", "Rain."),
]


def _head(template: str) -> dict[str, Any]:
    return {"type": "lm", "prompt_template": template, "target_template": " {target}", "max_new_tokens": 8}


def _model(registry: Registry, **router: Any) -> MultiTaskModel:
    backbone = copy.deepcopy(TINY_LLAMA)
    backbone["config_overrides"]["initializer_range"] = 0.2  # at 0.02 greedy decoding repeats one token
    lora = {"type": "lora", "rank": 4, "alpha": 16, "init": "random", "target_modules": ["q_proj", "v_proj"]}
    recipe = {
        "run": {"name": "gen", "seed": 3, "max_length": 48},
        "backbone": backbone,
        "adapters": {"news": dict(lora), "verse": dict(lora)},
        "combiner": {"type": "router", "hidden_dim": 16, **router},
        "tasks": {
            "news": {"dataset": {"type": "bbc_headlines"}, "head": _head("Article: {text}\nHeadline:"), "metrics": ["rouge"]},
            "verse": {"dataset": {"type": "bbc_headlines"}, "head": _head("English: {text}\nFrench:"), "metrics": ["bleu"]},
        },
        "phases": [{"name": "train", "steps": 1, "train": ["adapters"]}],
    }
    resolved = resolve(recipe, registry, "test")
    model = build_model(resolved, {"news": TaskInfo("news", 0), "verse": TaskInfo("verse", 0)}).eval()
    # An untrained router's biases send every prompt to one adapter; unit-normal weights and no biases make it
    # decide from the input, which splits these prompts between the two adapters.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.combiner.mlp.named_parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator))
            elif name.endswith("bias"):
                param.zero_()
    return model


def _prompts(model: MultiTaskModel, rows: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded prompts rendered by each row's own head, and the rows' task ids."""
    tokenizer = model.backbone.tokenizer
    features: dict[str, list[Any]] = {"prompt_ids": []}
    for task, text in rows:
        encoded = model.heads[task].encode({"text": [text]}, tokenizer, 48)
        features["prompt_ids"] += encoded["prompt_ids"]
    batch = model.heads[rows[0][0]].collate({**features, "input_ids": features["prompt_ids"],
                                             "attention_mask": [[1] * len(p) for p in features["prompt_ids"]]}, tokenizer)
    task_ids = torch.tensor([model.task_names.index(task) for task, _ in rows])
    return batch["prompt_input_ids"], batch["prompt_attention_mask"], task_ids


def _cut(tokens: list[int], stop: int) -> list[int]:
    """A row's new tokens up to and including its first stop token (a finished row is padded after it)."""
    return tokens[: tokens.index(stop) + 1] if stop in tokens else tokens


def _batched_and_alone(model: MultiTaskModel, options: dict[str, Any]) -> tuple[list[list[int]], list[list[int]]]:
    ids, mask, task_ids = _prompts(model, PROMPTS)
    assert mask[:, 0].eq(0).any() and mask[:, -1].eq(1).all()  # left-padded
    stop = options["eos_token_id"]
    together = [_cut(row, stop) for row in model.generate(ids, mask, task_ids, **options).tolist()]
    alone = []
    for row in PROMPTS:
        one_ids, one_mask, one_task = _prompts(model, [row])
        alone.append(_cut(model.generate(one_ids, one_mask, one_task, **options)[0].tolist(), stop))
    return together, alone


def _options(model: MultiTaskModel, max_new_tokens: int = 8) -> dict[str, Any]:
    options = model.heads["news"].generation_options()
    options["max_new_tokens"] = max_new_tokens
    return options


@pytest.mark.parametrize("routing", ["oracle", "learned"])
def test_generate_mixed_batch_equals_each_prompt_alone(registry: Registry, routing: str) -> None:
    model = _model(registry)
    options = _options(model)
    with model.use_combiner("oracle"):
        first, _ = _batched_and_alone(model, options)
    # A token the first row generates mid-way becomes the stop token: that row finishes early in the batch while the
    # others go on, as rows finishing at their own stop string or EOS do.
    cut = next(i for i in range(1, len(first[0])) if first[0][i] not in first[0][:i])
    options["eos_token_id"] = first[0][cut]
    with model.use_combiner(routing_path(routing)), model.recording_routing() as log:
        together, alone = _batched_and_alone(model, options)
    assert together == alone
    assert len(together[0]) == cut + 1 and together[0][-1] == options["eos_token_id"]
    assert max(len(t) for t in together) == options["max_new_tokens"]
    # The routing of the batch is the routing of each prompt alone (decided once from the prompt).
    torch.testing.assert_close(log[0], torch.cat(log[1:]), atol=1e-5, rtol=0)
    if routing == "learned":
        chosen = log[0].argmax(-1)
        assert len(set(chosen.tolist())) == 2, "the router splits this batch between both adapters"


def test_generate_routing_changes_the_tokens(registry: Registry) -> None:
    """The same prompt under the other task's LoRA, or no adapter, generates other tokens (the test above compares
    outputs that depend on routing)."""
    model = _model(registry)
    options = _options(model)
    ids, mask, _ = _prompts(model, [PROMPTS[0], PROMPTS[0]])
    with model.use_combiner("oracle"):
        own, other = model.generate(ids, mask, torch.tensor([0, 1]), **options).tolist()
        with model.adapters_disabled():
            base = model.generate(ids, mask, torch.tensor([0, 1]), **options).tolist()
    assert own != other and own != base[0] and base[0] == base[1]


def test_generate_with_layer_source_keeps_the_prompts_sites(registry: Registry) -> None:
    """A `layer:0` router applies adapters from layer 1 on: new tokens decoded from the KV cache get no adapter at
    layer 0 either, exactly as recomputing the whole sequence each step (no cache) under the prompt's routing."""
    model = _model(registry, source="layer:0")
    ids, mask, task_ids = _prompts(model, PROMPTS)
    options = _options(model, max_new_tokens=6)
    with model.use_combiner("combiner"):
        cached = model.generate(ids, mask, task_ids, **options)
        recomputed = model.generate(ids, mask, task_ids, use_cache=False, **options)
    assert torch.equal(cached, recomputed)


def test_evaluate_base_scores_the_backbone_without_adapters(registry: Registry) -> None:
    """`base` routing predicts what the model predicts once its LoRAs are zeroed, and scores it with the same metrics
    and an interval over the examples."""
    import datasets
    from mtkit_metrics.config import RougeMetricConfig
    from mtkit_metrics.text import RougeMetric

    from mtkit.rundir.evaluate import evaluate_examples

    model = _model(registry)
    texts = [text for _, text in PROMPTS]
    encoded = model.heads["news"].encode({"text": texts, "target": ["a headline"] * 4}, model.backbone.tokenizer, 48)
    examples = datasets.Dataset.from_dict(encoded)
    metrics = [RougeMetric(RougeMetricConfig())]

    def run(routing: str) -> Any:
        return evaluate_examples(model, "news", examples, metrics, combiner=evaluation_path(routing), batch_size=3, device=torch.device("cpu"), resamples=50)

    base, oracle = run("base"), run("oracle")
    assert base.predictions != oracle.predictions
    assert set(base.intervals) == set(base.scores) == {"rouge1", "rouge2", "rougeL"}
    with torch.no_grad():
        for adapter in model.adapters.values():
            for name, param in adapter.named_parameters():
                if "lora_b" in name:
                    param.zero_()
    assert run("oracle").predictions == base.predictions


@pytest.mark.parametrize("source", ["embeddings", "layer:0", "frozen_pass"])
def test_training_forward_routes_from_the_prompt_as_generation_does(registry: Registry, source: str) -> None:
    """A training batch holds prompt + answer; the router pools the prompt alone (the batch's routing mask), so the
    routing it learns from is the routing it gives when the same prompts are generated from."""
    model = _model(registry, source=source)
    tokenizer = model.backbone.tokenizer
    rows = [("news", PROMPTS[0][1], "Carmaker shares fall"), ("news", PROMPTS[3][1], "A wet day across the country")]
    encoded = model.heads["news"].encode({"text": [r[1] for r in rows], "target": [r[2] for r in rows]}, tokenizer, 48)
    batch = model.heads["news"].collate(encoded, tokenizer)
    assert batch["routing_mask"].sum(1).tolist() == [len(p) for p in encoded["prompt_ids"]]
    assert batch["routing_mask"].sum() < batch["attention_mask"].sum()  # the answers are left out
    options = _options(model, max_new_tokens=2)
    with model.use_combiner("combiner"), model.recording_routing() as log:
        losses, _ = model([("news", batch)])
        model.generate(batch["prompt_input_ids"], batch["prompt_attention_mask"], torch.zeros(2, dtype=torch.long), **options)
    assert "news" in losses
    torch.testing.assert_close(log[0], log[1], atol=1e-4, rtol=0)


def test_generate_gathers_each_sites_adapters_once_per_call(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five LoRAs in a mixed batch under oracle routing take the gathered path; its per-sample factors are gathered
    once per site for the whole generate call (the routing is the prompt's), and the tokens equal a greedy loop of
    whole-sequence passes, each gathering anew."""
    backbone = copy.deepcopy(TINY_LLAMA)
    backbone["config_overrides"]["initializer_range"] = 0.2
    lora = {"type": "lora", "rank": 4, "alpha": 16, "init": "random", "target_modules": ["q_proj", "v_proj"]}
    names = [f"t{i}" for i in range(5)]
    head = _head("Text: {text}\nSummary:")
    recipe = {
        "run": {"name": "gen", "seed": 3, "max_length": 48},
        "backbone": backbone,
        "adapters": {name: dict(lora) for name in names},
        "tasks": {name: {"dataset": {"type": "bbc_headlines"}, "head": head, "metrics": ["rouge"]} for name in names},
        "phases": [{"name": "train", "steps": 1, "train": ["adapters"]}],
    }
    model = build_model(resolve(recipe, registry, "test"), {name: TaskInfo(name, 0) for name in names}).eval()
    rows = [(names[i % 5], text) for i, (_, text) in enumerate(PROMPTS * 2)][:6]
    ids, mask, task_ids = _prompts(model, rows)
    calls = count_calls(monkeypatch, "mtkit.api.lowrank.gather")
    steps = 5
    options = model.heads["t0"].generation_options() | {"max_new_tokens": steps, "min_new_tokens": steps}
    with torch.no_grad(), model.use_combiner("oracle"):
        generated = model.generate(ids, mask, task_ids, **options)
        assert calls[0] == len(model._sites)
        sequence, attention = ids, mask
        for _ in range(steps):  # each pass a forward of its own (a new ForwardContext), as Hugging Face positions them
            positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 1)
            model._begin(sequence, attention, task_ids)
            logits = model.backbone.model(input_ids=sequence, attention_mask=attention, position_ids=positions).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            sequence, attention = torch.cat([sequence, nxt], 1), torch.cat([attention, torch.ones_like(nxt)], 1)
    assert calls[0] > len(model._sites)
    assert torch.equal(generated, sequence[:, ids.shape[1] :])
