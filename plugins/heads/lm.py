"""`lm`: text-to-text tasks on a causal LM (prompt template, answer-only loss, batched generation)."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit import (
    ROUTING_MASK,
    TRUNCATED,
    Backbone,
    BackboneOutput,
    Head,
    HeadOutput,
    ModelAccess,
    MtkitError,
    TaskInfo,
    pad_batch,
    peft_format,
)

from .config import LmHeadConfig

_MARK = "\x00"  # stands in for field values when measuring the template's fixed tail


def template_fields(template: str) -> list[str]:
    """The field names a format string reads, in order, without repeats."""
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            root = name.split(".")[0].split("[")[0]
            if not root:
                raise ValueError(f"template {template!r}: use named fields ({{text}}), not positional ones")
            if root not in names:
                names.append(root)
    return names


class LmHead(Head):
    """Text-to-text generation: the LM continues a prompt rendered from the example with the answer.

    Training sequences are prompt + answer + EOS with the prompt's labels masked (-100), so the loss
    counts answer tokens only. Prediction left-pads the prompts and generates.
    """

    name = "lm"
    config_class = LmHeadConfig
    config: LmHeadConfig
    input_fields = ("input_ids", "attention_mask", "labels", "prompt_ids", "reference")

    def __init__(self, config: LmHeadConfig, *, backbone: Backbone, task: TaskInfo) -> None:
        super().__init__(config, backbone=backbone, task=task)
        if not backbone.generative:
            raise MtkitError(f"the lm head needs a generative backbone (hf_causal_lm), not {backbone.name!r}")
        self.tokenizer = backbone.tokenizer
        if config.chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise MtkitError("the tokenizer has no chat template; set chat_template = false", key="chat_template")
        try:
            self.prompt_fields = template_fields(config.prompt_template)
            self.target_fields = template_fields(config.target_template)
        except ValueError as exc:
            raise MtkitError(str(exc)) from None
        if not self.prompt_fields:
            raise MtkitError("names no example field, e.g. '{text}'", key="prompt_template")

    # --- text ------------------------------------------------------------------------------

    def render_prompt(self, example: Mapping[str, Any], tokenizer: Any = None) -> str:
        """The prompt text exactly as tokenized (chat template applied when configured; default: the backbone's tokenizer)."""
        prompt = self.config.prompt_template.format_map(example)
        if not self.config.chat_template:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        if self.config.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.config.system_prompt})
        return (tokenizer or self.tokenizer).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _tail_ids(self, tokenizer: Any) -> list[int]:
        """Tokens after the prompt's last field (e.g. '\\nHeadline:'), kept when a long prompt is cut."""
        rendered = self.render_prompt({name: _MARK for name in self.prompt_fields}, tokenizer)
        tail = rendered.rsplit(_MARK, 1)[1]
        return tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []

    def _target(self, example: Mapping[str, Any]) -> str:
        return self.config.target_template.format_map(example)

    # --- Head ------------------------------------------------------------------------------

    def peft_head(self, prefix: str) -> peft_format.PeftHeadWeights:
        """transformers' causal LM: its lm_head is the backbone's own, so PEFT's CAUSAL_LM folder carries no head."""
        return peft_format.PeftHeadWeights("CAUSAL_LM", {}, [])

    def load_peft_head(self, tensors: Mapping[str, Tensor], prefix: str) -> None:
        name = sorted(tensors)[0]
        raise MtkitError(
            f"tensor {name!r} from modules_to_save would replace part of the backbone (the lm head uses the backbone's "
            "own output layer and embeddings, which stay frozen); re-save the adapter without modules_to_save"
        )

    def encode(self, examples: Mapping[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
        names = list(examples)
        rows = [dict(zip(names, values, strict=True)) for values in zip(*(examples[n] for n in names), strict=True)]
        prompts = tokenizer([self.render_prompt(r, tokenizer) for r in rows], add_special_tokens=not self.config.chat_template)["input_ids"]
        tail = self._tail_ids(tokenizer)
        has_target = all(f in examples for f in self.target_fields)
        answers = tokenizer([self._target(r) for r in rows], add_special_tokens=False)["input_ids"] if has_target else None
        out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "prompt_ids": [], TRUNCATED: []}
        if answers is not None:
            out["labels"], out["reference"] = [], []
        for i, prompt in enumerate(prompts):
            answer = answers[i] + [tokenizer.eos_token_id] if answers is not None else []
            out[TRUNCATED].append(len(prompt) + len(answer) > max_length)
            answer = answer[: max_length // 2] if len(prompt) + len(answer) > max_length else answer
            prompt = _truncate(prompt, max(max_length - len(answer), 1), len(tail))
            out["prompt_ids"].append(prompt)
            out["input_ids"].append(prompt + answer)
            out["attention_mask"].append([1] * (len(prompt) + len(answer)))
            if answers is not None:
                out["labels"].append([-100] * len(prompt) + answer)
                target = self._target(rows[i]).strip()
                extra = {f: rows[i][f] for f in self.config.reference_fields}
                out["reference"].append({"target": target, **extra} if extra else target)
        return out

    def collate(self, features: Mapping[str, list[Any]], tokenizer: Any) -> dict[str, Any]:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        batch = pad_batch(
            {k: features[k] for k in ("input_ids", "attention_mask", "labels", "reference") if k in features}, pad_id
        )
        # Generation continues the last position of every row, so prompts are padded on the left.
        prompts = features["prompt_ids"]
        if "input_ids" in batch:  # routing reads the prompt alone, as it does when the prompt is generated from
            full = batch["input_ids"].shape[1]
            batch[ROUTING_MASK] = torch.tensor([[1] * len(p) + [0] * (full - len(p)) for p in prompts])
        width = max(len(p) for p in prompts)
        batch["prompt_input_ids"] = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts])
        batch["prompt_attention_mask"] = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        return batch

    def forward(self, output: BackboneOutput, batch: Mapping[str, Any]) -> HeadOutput:
        if output.logits is None:
            raise MtkitError(f"task {self.task.name!r}: the lm head needs a backbone that returns logits")
        if "labels" not in batch:
            return HeadOutput(loss=None, logits=output.logits)
        # Position t predicts token t+1; -100 labels (prompt, padding) drop out of the mean.
        logits = output.logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return HeadOutput(loss=loss, logits=output.logits)

    def generation_options(self) -> dict[str, Any]:
        """The keyword arguments of the backbone's `generate` for this task (what `predict` passes)."""
        config, tokenizer = self.config, self.tokenizer
        options: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": config.do_sample,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if config.do_sample:
            options.update(temperature=config.temperature, top_p=config.top_p)
        else:  # the checkpoint's generation_config may ask for sampling; greedy means greedy
            options.update(temperature=None, top_p=None, top_k=None)
        if config.stop:  # each row stops at its own stop string; clean() cuts the string itself
            options.update(stop_strings=list(config.stop), tokenizer=tokenizer)
        return options

    def predict(self, model: ModelAccess, batch: Mapping[str, Any]) -> list[Any]:
        tokenizer = self.tokenizer
        n = self.config.num_samples
        ids, mask = batch["prompt_input_ids"], batch["prompt_attention_mask"]
        if n > 1:  # one row per sample, so routing (set once per generate call) sees every row
            ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        new = model.generate({"input_ids": ids, "attention_mask": mask}, **self.generation_options())
        texts = [self.clean(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        if n == 1:
            return texts
        return [texts[i : i + n] for i in range(0, len(texts), n)]

    def clean(self, text: str) -> str:
        """A generated continuation cut at the first stop string."""
        for stop in self.config.stop:
            text = text.split(stop, 1)[0]
        return text.strip()

    def references(self, batch: Mapping[str, Any]) -> list[Any]:
        if "reference" not in batch:
            raise MtkitError(
                f"task {self.task.name!r}: the examples have no answer field {', '.join(self.target_fields)} to score against"
            )
        return list(batch["reference"])

    def example_from_text(self, text: str) -> dict[str, Any]:
        return {self.prompt_fields[0]: text}

    def validate_example(self, example: Mapping[str, Any]) -> str | None:
        for role, names in (
            ("prompt_template", self.prompt_fields),
            ("target_template", self.target_fields),
            ("reference_fields", self.config.reference_fields),
        ):
            for name in names:
                if name not in example:
                    return f"field {name!r} is missing (fields: {', '.join(sorted(example))}); fix head.{role} or the dataset"
                if example[name] is None or (
                    isinstance(example[name], str) and not example[name].strip() and role == "target_template"
                ):
                    return f"field {name!r} is empty; drop such rows or fix the dataset"
        return None


def _truncate(prompt: list[int], budget: int, tail: int) -> list[int]:
    """Cut a prompt to `budget` tokens from the middle, keeping its start and its fixed tail."""
    if len(prompt) <= budget:
        return prompt
    tail = min(tail, budget // 2)
    return prompt[: budget - tail] + (prompt[len(prompt) - tail :] if tail else [])
