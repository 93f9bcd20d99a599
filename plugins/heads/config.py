"""Configs of the built-in heads (pydantic only, so listing never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mtkit import ComponentConfig


class ClassificationHeadConfig(ComponentConfig):
    """Sequence classification: pooled hidden states -> MLP -> class logits."""

    num_labels: int | None = Field(default=None, gt=1, description="Number of classes; default: the dataset's label names.")
    pooling: Literal["cls", "mean", "attention", "pooler"] = Field(
        default="mean",
        description="cls: first token; mean: masked mean; attention: learned attention over tokens; pooler: the "
        "backbone model's own pooler (BERT's tanh layer over the first token), as transformers' sequence "
        "classification models pool, so a PEFT SEQ_CLS head imports and exports.",
    )
    hidden_layers: int = Field(default=0, ge=0, le=4, description="Hidden layers of the MLP before the output layer.")
    hidden_size: int | None = Field(default=None, gt=0, description="Width of the MLP's hidden layers (default: backbone width).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout before each linear layer.")
    layer_norm: bool = Field(default=False, description="Apply a task-specific LayerNorm to the pooled vector.")
    text_field: str = Field(default="text", min_length=1, description="Example field holding the input text.")
    text_pair_field: str | None = Field(default=None, description="Optional second text field (sentence pairs).")
    label_field: str = Field(default="label", min_length=1, description="Example field holding the integer label.")


class MultipleChoiceHeadConfig(ComponentConfig):
    """Multiple choice: each (question, choice) pair is encoded as one row, scored, and the best choice wins."""

    question_field: str = Field(default="question", min_length=1, description="Example field holding the question (or context).")
    choices_field: str = Field(default="choices", min_length=1, description="Example field holding the list of answer texts.")
    label_field: str = Field(default="label", min_length=1, description="Example field holding the index of the correct choice.")
    num_choices: int | None = Field(
        default=None, ge=2, description="Exact number of choices every example must have (unset: any number >= 2, padded per batch)."
    )
    pooling: Literal["cls", "mean", "attention"] = Field(
        default="mean", description="cls: first token; mean: masked mean; attention: learned attention over tokens."
    )
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout before the scoring layer.")
    layer_norm: bool = Field(default=False, description="Apply a task-specific LayerNorm to each pooled pair vector.")


class SpanQaHeadConfig(ComponentConfig):
    """Extractive QA: start/end logits over the context tokens; the answer is the best-scoring span of context text."""

    question_field: str = Field(default="question", min_length=1, description="Example field holding the question.")
    context_field: str = Field(default="context", min_length=1, description="Example field holding the context the answer is cut from.")
    answer_field: str = Field(
        default="answer", min_length=1, description="Example field holding the gold answer text (a string, or a list whose first item is used)."
    )
    answer_start_field: str | None = Field(
        default=None,
        description="Optional field with the answer's character offset in the context; unset: the answer's first occurrence.",
    )
    max_answer_tokens: int = Field(default=30, ge=1, le=512, description="Longest answer span considered when predicting.")


class TokenClassificationHeadConfig(ComponentConfig):
    """Token classification (tagging): one label per word, predicted at the word's first sub-token."""

    tokens_field: str = Field(default="tokens", min_length=1, description="Example field holding the list of words.")
    tags_field: str = Field(default="tags", min_length=1, description="Example field holding one integer label per word.")
    num_labels: int | None = Field(default=None, gt=1, description="Number of tags; default: the dataset's label names.")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout before the tagging layer.")
    layer_norm: bool = Field(default=False, description="Apply a task-specific LayerNorm before the tagging layer.")

class LmHeadConfig(ComponentConfig):
    """Text-to-text generation on a causal LM: prompt template -> answer, loss on the answer tokens only."""

    prompt_template: str = Field(
        default="{text}",
        min_length=1,
        description="Python format string over the example's fields giving the prompt, e.g. 'Article: {text}\\nHeadline:'.",
    )
    target_template: str = Field(
        default=" {target}",
        min_length=1,
        description="Format string giving the answer the model learns to continue the prompt with; its stripped text is the reference.",
    )
    chat_template: bool = Field(default=False, description="Wrap the prompt as a user turn with the tokenizer's chat template.")
    system_prompt: str | None = Field(
        default=None, description="System turn for the chat template (default: the template's own)."
    )
    reference_fields: list[str] = Field(
        default_factory=list,
        description="Extra example fields handed to metrics with the reference: references become dicts "
        "{'target': text, field: value...} (pass_at_k needs 'prompt', 'test', 'entry_point').",
    )
    max_new_tokens: int = Field(default=32, gt=0, le=4096, description="Tokens generated per prediction.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: float = Field(default=1.0, gt=0, le=10, description="Sampling temperature (do_sample only).")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass (do_sample only).")
    num_samples: int = Field(
        default=1, ge=1, le=200, description="Generations per example (>1 needs do_sample); predictions become lists (pass@k)."
    )
    stop: list[str] = Field(
        default_factory=list,
        description="Strings that end a prediction: the text from the first one on is cut off, e.g. ['\\n'].",
    )

    @model_validator(mode="after")
    def _samples_need_sampling(self) -> LmHeadConfig:
        if self.num_samples > 1 and not self.do_sample:
            raise ValueError("num_samples > 1 needs do_sample = true (greedy decoding repeats one answer)")
        return self
