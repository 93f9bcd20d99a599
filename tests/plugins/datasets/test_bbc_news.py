"""The packaged BBC News topics with the article, its headline or its body as the input."""

from __future__ import annotations

from mtkit_datasets.config import BbcNewsDatasetConfig
from mtkit_datasets.packaged import BbcNewsDataset

from mtkit.data.tasks import _split


def _task(**fields: object) -> tuple:
    source = BbcNewsDataset(BbcNewsDatasetConfig(validation_size=0.1, **fields))
    return _split(source, source.load(), source.config, "topic")


def test_bbc_news_text_picks_the_headline_or_the_body_of_the_same_article() -> None:
    articles, headlines, bodies = (BbcNewsDataset(BbcNewsDatasetConfig(text=t)).load()["train"] for t in ("article", "headline", "body"))
    assert len(articles) == len(headlines) == len(bodies) == 2225
    assert headlines["label"] == articles["label"]
    assert articles[0]["text"] == f"{headlines[0]['text']}. {bodies[0]['text']}"
    assert headlines[0]["text"] == "Ad sales boost Time Warner profit"  # business/001.txt's first line
    assert max(len(h.split()) for h in headlines["text"]) < 20 < min(len(b.split()) for b in bodies["text"])


def test_headline_and_article_tasks_hold_out_the_same_articles() -> None:
    """A headline task capped to a few training examples shares its held-out and validation articles with
    the full article task, so an article task's adapter never trained on a headline task's test article."""
    a_train, a_test, a_val, _ = _task()
    h_train, h_test, h_val, info = _task(text="headline", max_train_examples=100)
    for article_split, headline_split in ((a_test, h_test), (a_val, h_val)):
        assert len(article_split) == len(headline_split) and article_split["label"] == headline_split["label"]
        assert all(a.startswith(f"{h}. ") for a, h in zip(article_split["text"], headline_split["text"], strict=True))
    assert len(h_train) == 100 and info["available"]["train"] == len(a_train)
    assert all(any(a.startswith(f"{h}. ") for a in a_train["text"]) for h in h_train["text"])
