"""A watchlist problem with the file and line that caused it, and what to write instead."""

from __future__ import annotations


class WatchlistError(Exception):
    """One problem in one file, printed as "file:line: message"."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )

    def __repr__(self) -> str:
        return f"WatchlistError({str(self)!r})"
