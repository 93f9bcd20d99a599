"""Built-in datasets: generic loaders and the packaged real corpora."""

from __future__ import annotations

from mtkit import Register, hookimpl

from .config import (
    BbcHeadlinesDatasetConfig,
    BbcNewsDatasetConfig,
    BibleTranslationDatasetConfig,
    CsvDatasetConfig,
    HfDatasetConfig,
    HumanEvalDatasetConfig,
    JsonDatasetConfig,
    MmluDatasetConfig,
    ParquetDatasetConfig,
    RottenTomatoesDatasetConfig,
)

MTKIT_PLUGIN_API = 2


@hookimpl
def mtkit_register_components(register: Register) -> None:
    register("mtkit_datasets.packaged:RottenTomatoesDataset", kind="dataset", name="rotten_tomatoes", config=RottenTomatoesDatasetConfig)
    register("mtkit_datasets.packaged:BbcNewsDataset", kind="dataset", name="bbc_news", config=BbcNewsDatasetConfig)
    register("mtkit_datasets.mmlu:MmluDataset", kind="dataset", name="mmlu", config=MmluDatasetConfig)
    register("mtkit_datasets.generic:HfDataset", kind="dataset", name="hf", config=HfDatasetConfig)
    register("mtkit_datasets.generic:CsvDataset", kind="dataset", name="csv", config=CsvDatasetConfig)
    register("mtkit_datasets.generic:JsonDataset", kind="dataset", name="json", config=JsonDatasetConfig)
    register("mtkit_datasets.generic:ParquetDataset", kind="dataset", name="parquet", config=ParquetDatasetConfig)
    register("mtkit_datasets.text2text:BbcHeadlinesDataset", kind="dataset", name="bbc_headlines", config=BbcHeadlinesDatasetConfig)
    register("mtkit_datasets.text2text:BibleTranslationDataset", kind="dataset", name="bible_translation", config=BibleTranslationDatasetConfig)
    register("mtkit_datasets.text2text:HumanEvalDataset", kind="dataset", name="humaneval", config=HumanEvalDatasetConfig)
