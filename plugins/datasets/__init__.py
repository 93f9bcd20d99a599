"""Built-in datasets: generic loaders and the packaged real corpora."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import (
    BbcHeadlinesDatasetConfig,
    BbcNewsDatasetConfig,
    BibleTranslationDatasetConfig,
    HumanEvalDatasetConfig,
    RottenTomatoesDatasetConfig,
)

MTKIT_PLUGIN_API = 1


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_datasets.packaged:RottenTomatoesDataset", kind="dataset", name="rotten_tomatoes", config=RottenTomatoesDatasetConfig)
    register("mtkit_datasets.packaged:BbcNewsDataset", kind="dataset", name="bbc_news", config=BbcNewsDatasetConfig)
    register("mtkit_datasets.text2text:BbcHeadlinesDataset", kind="dataset", name="bbc_headlines", config=BbcHeadlinesDatasetConfig)
    register("mtkit_datasets.text2text:BibleTranslationDataset", kind="dataset", name="bible_translation", config=BibleTranslationDatasetConfig)
    register("mtkit_datasets.text2text:HumanEvalDataset", kind="dataset", name="humaneval", config=HumanEvalDatasetConfig)
