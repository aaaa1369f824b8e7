"""The vector signal of story grouping: which articles get a vector, and the vector plus
language of an article (`dedup.Embedding`), made through the `Embedder` protocol.

`MONITOR_STORY_VECTORS` decides who is embedded: `gated` (default) embeds every article that
passed a watchlist's gate outside a catch-up, i.e. every article that can alert or follow up
an alert; `all` embeds every new article (about 150 articles/s with USE on one core: a
500-feed catch-up of 15,000 articles would spend 100 s on it); `off` keeps MinHash alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.dedup import Embedding
from monitor.languages import guess
from monitor.model import Article
from monitor.relevance.embed import Embedder, Vectors, article_text

STORY_VECTORS = ("gated", "all", "off")
BATCH = 64


def language_of(article: Article) -> str:
    """ISO 639-1 code of the article's language, "?" when too short or unsure."""
    return guess(article.title, article.text)


def embeddings(embedder: Embedder, articles: Sequence[Article]) -> list[Embedding]:
    """One `Embedding` per article (title and lede, as the watchlist models embed them)."""
    out: list[Embedding] = []
    for start in range(0, len(articles), BATCH):
        chunk = articles[start : start + BATCH]
        matrix: Vectors = embedder.embed([article_text(a) for a in chunk])
        out.extend(Embedding(matrix[i], language_of(a)) for i, a in enumerate(chunk))
    return out
