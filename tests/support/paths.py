"""Where the tests find their data: everything lives inside the repository, under tests/data/.

`tests/data/README.md` says where each file came from and under which licence.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CORPUS = DATA / "corpus"  # real feeds, news items and labels
FEEDS = CORPUS / "feeds"
FEEDPARSER_TESTS = CORPUS / "feedparser-tests"
