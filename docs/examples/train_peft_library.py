"""Train one LoRA per task of an mtkit recipe with PEFT itself, the way PEFT users train classification adapters,
and save them as a library that `[libraries.<label>] from_peft` imports.

Each task gets `AutoModelForSequenceClassification` on the recipe's backbone, `LoraConfig(task_type="SEQ_CLS")` and a
plain AdamW loop; `save_pretrained` writes the LoRA with the classifier in `modules_to_save`. mtkit only supplies the
data: each task's training split, with the examples, labels and label order an mtkit run of the recipe uses, so its
held-out test split stays unseen.

    python docs/examples/train_peft_library.py recipes/compose.toml lib --steps 60
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from mtkit.model.build import build_run
from mtkit.recipe.resolve import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="an mtkit recipe whose tasks have classification heads")
    parser.add_argument("out", type=Path, help="the library folder to write (one PEFT folder per task)")
    parser.add_argument("--steps", type=int, default=60, help="AdamW steps per task")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate of the LoRA and the classifier")
    args = parser.parse_args()

    built = build_run(load_recipe(args.recipe))
    base = built.model.backbone.model.config._name_or_path  # the local folder or hub id the backbone loaded
    tokenizer = built.model.backbone.tokenizer
    collate = DataCollatorWithPadding(tokenizer)
    batch_size = built.recipe.run.batch_size
    for task, data in built.tasks.items():
        labels = built.task_infos[task].label_names or ()
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels), id2label=dict(enumerate(labels)))
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=args.rank, lora_alpha=2 * args.rank, target_modules=["query", "value"]))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
        rows = data.train.select_columns(["input_ids", "attention_mask", "labels"]).shuffle(seed=0)
        model.train()
        for step in range(args.steps):
            start = step * batch_size % max(len(rows) - batch_size, 1)
            batch = collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.save_pretrained(args.out / task)
        print(f"{task}: {args.out / task} (last loss {loss.item():.3f})")


if __name__ == "__main__":
    main()
