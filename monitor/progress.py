"""Progress for long commands, on a terminal only: a transient rich bar or spinner on stderr.

When stderr is not a terminal (a pipe, a file, CI) nothing is drawn and nothing is written, so
scripts reading a command's output see exactly what they saw before. `track` wraps an
iterable, `phase` shows a spinner with the elapsed time for work that cannot count (a
migration, training), `counter` counts events that arrive by callback (polled sources).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

T = TypeVar("T")


def enabled(stream: TextIO | None = None) -> bool:
    """Draw progress only where a person watches: stderr is a terminal."""
    out = stream or sys.stderr
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


def _nothing(n: int = 1) -> None:
    """`advance` when nothing is drawn."""


@contextmanager
def counter(
    description: str,
    total: int | None = None,
    *,
    stream: TextIO | None = None,
    count: bool = True,
) -> Iterator[Callable[[int], None]]:
    """A bar (or a spinner with a count when `total` is unknown); yields `advance(n)`."""
    if not enabled(stream):
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    elif count:
        columns += [TextColumn("{task.completed:.0f}")]
    columns.append(TimeElapsedColumn())
    console = Console(file=stream or sys.stderr)
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def track(
    items: Iterable[T], description: str, total: int | None = None, *, stream: TextIO | None = None
) -> Iterator[T]:
    """The items, with a bar advancing as each is taken."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with counter(description, total, stream=stream) as advance:
        for item in items:
            yield item
            advance(1)


@contextmanager
def phase(description: str, *, stream: TextIO | None = None) -> Iterator[None]:
    """A spinner with the elapsed time while the block runs."""
    with counter(description, None, stream=stream, count=False):
        yield
