"""What people see on a terminal, and what pipes get instead.

Logs: `auto` (the default) renders aligned colour lines on a terminal and JSON elsewhere; an
explicit `json` stays JSON on a terminal. Progress: drawn on a terminal, nothing at all in a
pipe. A real pseudo-terminal stands in for the person's terminal.
"""

from __future__ import annotations

import io
import json
import logging
import os
import select
from collections.abc import Iterator
from typing import TextIO

import pytest
import structlog

from monitor import logs, progress
from monitor.settings import Settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures logging its own way; none may leave it (or cached loggers) behind
    for a later test that captures logs."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, structlog.get_config())
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.configure(**saved[2])


def _configure(fmt: str, stream: TextIO) -> None:
    logs.configure("INFO", fmt, stream)
    structlog.configure(cache_logger_on_first_use=False)


@pytest.fixture
def tty() -> Iterator[tuple[TextIO, int]]:
    """A writable end of a pseudo-terminal (isatty() is true) and the fd to read it from."""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w", buffering=1, encoding="utf-8")
    try:
        yield stream, master
    finally:
        stream.close()
        os.close(master)


def _read(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def test_auto_is_the_default_and_json_in_a_pipe() -> None:
    assert Settings().log_format == "auto"
    buf = io.StringIO()
    _configure("auto", buf)
    logs.get_logger("monitor.test").info("source polled", source="a", new=3)
    record = json.loads(buf.getvalue())
    assert record["event"] == "source polled" and record["new"] == 3


def test_auto_on_a_terminal_is_aligned_colour_one_line_per_event(
    tty: tuple[TextIO, int],
) -> None:
    stream, master = tty
    _configure("auto", stream)
    log = logs.get_logger("monitor.test")
    log.info("short", source="a")
    log.warning("a much longer event name", source="b", token="xoxb-SENTINEL-9")
    stream.flush()
    out = _read(master)
    assert "\x1b[" in out  # colour
    lines = [line for line in out.replace("\r", "").splitlines() if line.strip()]
    assert len(lines) == 2 and not any(line.lstrip().startswith("{") for line in lines)
    plain = [_strip_ansi(line) for line in lines]
    # Keys start in the same column: the event name is padded.
    assert plain[0].index("source=a") == plain[1].index("source=b")
    assert "SENTINEL" not in out  # redaction applies to people's lines too


def test_json_stays_json_on_a_terminal(tty: tuple[TextIO, int]) -> None:
    stream, master = tty
    _configure("json", stream)
    logs.get_logger("monitor.test").info("hello", source="a")
    stream.flush()
    assert json.loads(_read(master).strip())["event"] == "hello"


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_progress_draws_on_a_terminal_only(tty: tuple[TextIO, int]) -> None:
    stream, master = tty
    assert progress.enabled(stream) and not progress.enabled(io.StringIO())
    pipe = io.StringIO()
    assert list(progress.track([1, 2, 3], "counting", stream=pipe)) == [1, 2, 3]
    with progress.phase("waiting", stream=pipe), progress.counter("n", stream=pipe) as advance:
        advance(2)
    assert pipe.getvalue() == ""  # nothing at all in a pipe
    assert list(progress.track(range(3), "counting", stream=stream)) == [0, 1, 2]
    stream.flush()
    assert "counting" in _read(master)
