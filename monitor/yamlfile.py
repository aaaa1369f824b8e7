"""Where in a YAML file a validation error points: shared by the sources and watchlist loaders."""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq


def line_of(data: Any, loc: tuple[int | str, ...]) -> int | None:
    """Walk ruamel's line info along a pydantic error location (0-based → 1-based)."""
    node = data
    line: int | None = None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    if line is None and isinstance(data, CommentedMap):
        line = data.lc.line + 1
    return line
