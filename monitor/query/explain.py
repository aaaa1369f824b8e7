"""Explanations for admins: why a watchlist matched an article or, when it did not, the
smallest part of its query that found nothing ("no @un_activity", "both found, but not within
10 words"). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.model import Match
from monitor.query import syntax as q
from monitor.query.evaluate import (
    CAlias,
    CAnd,
    CField,
    CNear,
    CNode,
    CNot,
    COr,
    CRegex,
    CWords,
    Doc,
    Fields,
    Hit,
)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a watchlist did or did not match an article (for `test`, `eval` and admins)."""

    watchlist_id: str
    matched: bool
    reason: str
    score: float
    terms: tuple[str, ...]
    match: Match | None


def _short(node: q.Node, limit: int = 80) -> str:
    text = q.to_string(node)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def why_not(ast: q.Node, node: CNode, doc: Doc, fields: Fields) -> str:
    """The smallest part of a query that explains a miss, e.g. 'no @un_activity OR …'."""
    if isinstance(node, CAnd) and isinstance(ast, q.And):
        return "; ".join(
            why_not(a, c, doc, fields)
            for a, c in zip(ast.children, node.children, strict=True)
            if not c.evaluate(doc, fields, [])
        )
    if isinstance(node, CField) and isinstance(ast, q.Field):
        return why_not(ast.child, node.child, doc, node.fields)
    if isinstance(node, CNear) and isinstance(ast, q.Near):
        if not node.left.positions(doc, fields):
            return why_not(ast.left, node.left, doc, fields)
        if not node.right.positions(doc, fields):
            return why_not(ast.right, node.right, doc, fields)
        return (
            f"{_short(ast.left, 40)} and {_short(ast.right, 40)} both found, "
            f"but not within {node.distance} words"
        )
    if isinstance(node, CNot):
        hits: list[Hit] = []
        node.child.evaluate(doc, fields, hits)
        return "excluded by NOT: " + ", ".join(dict.fromkeys(h[0] for h in hits))
    return "no " + _short(ast)


def found_terms(node: CNode, doc: Doc, fields: Fields) -> list[str]:
    """Positive terms present anywhere in the article, whether or not the query matched."""
    if isinstance(node, CWords | CRegex):
        return [node.label] if node.positions(doc, fields) else []
    children: Sequence[CNode] = ()
    if isinstance(node, CAlias):
        children = node.members
    elif isinstance(node, CAnd | COr):
        children = node.children
    elif isinstance(node, CNear):
        children = (node.left, node.right)
    elif isinstance(node, CField):
        return found_terms(node.child, doc, node.fields)
    out: list[str] = []
    for child in children:
        out.extend(t for t in found_terms(child, doc, fields) if t not in out)
    return out
