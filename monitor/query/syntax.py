"""The watchlist query language: text → AST → text, and AST → compiled matcher.

Lucene-like so admins recognise it: words, "quoted phrases", AND / OR / NOT (and ``-word``),
parentheses, prefix wildcards (``launch*``), proximity (``"kim letter"~10`` or
``a NEAR/10 b``), fields (``title:``, ``summary:``, ``source:``, ``url:``), aliases (``@kim``)
and RE2 regular expressions (``/hwasong-?\\d+/``). Adjacent terms without an operator are ANDed.
Precedence, loosest first: OR, AND, NEAR, NOT/field. `to_string(parse(s))` is canonical and
parses back to an equal AST. Compiled evaluation lives in `monitor.query.evaluate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.textnorm import fold_term

FIELDS = ("title", "summary", "source", "url")
OPERATORS = ("AND", "OR", "NOT")
_NEAR_RE = re.compile(r"NEAR/(\d+)$")
_ALIAS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_SPECIAL = set('()"')
MAX_DISTANCE = 1000
#: Deepest nesting a query may have: parentheses, NOT/-, fields and NEAR chains each add a level.
#: Compiling, printing and evaluating recurse over the tree, so this bounds their stack too
#: (real watchlists nest three or four levels; 3,000 parentheses would blow Python's stack).
MAX_DEPTH = 50


class QueryError(ValueError):
    """A query that cannot be parsed or compiled; `position` is a 0-based character offset."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"column {self.position + 1}: {self.message}"


# --------------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Term:
    """One bare word as written (may hold - . ' which fold to word breaks); `prefix` for `word*`."""

    text: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Phrase:
    """Quoted words in order, or within `slop` extra words of each other when `~slop` is given."""

    text: str
    slop: int | None = None


@dataclass(frozen=True, slots=True)
class Alias:
    name: str


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str


@dataclass(frozen=True, slots=True)
class Field:
    field: str
    child: Node


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Near:
    left: Node
    right: Node
    distance: int


Node = Term | Phrase | Alias | Regex | Field | Not | And | Or | Near


def make_and(children: list[Node]) -> Node:
    """AND with nested ANDs flattened (the canonical shape the parser produces)."""
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, And) else (child,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def make_or(children: list[Node]) -> Node:
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, Or) else (child,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def is_positional(node: Node) -> bool:
    """Whether the node yields word positions, which NEAR needs on both sides."""
    if isinstance(node, Term | Phrase | Alias | Regex | Near):
        return True
    if isinstance(node, Or):
        return all(is_positional(child) for child in node.children)
    if isinstance(node, Field):
        return is_positional(node.child)
    return False


# ------------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # WORD PHRASE ALIAS REGEX FIELD LPAREN RPAREN AND OR NOT MINUS NEAR END
    value: str
    pos: int
    number: int | None = None
    prefix: bool = False


def _lex_phrase(text: str, i: int) -> tuple[_Tok, int]:
    end = text.find('"', i + 1)
    if end < 0:
        raise QueryError('unclosed quote: add a closing " after the phrase', i)
    value = text[i + 1 : end]
    if not fold_term(value.rstrip("*")):
        raise QueryError(f'"{value}" has no letters or digits to match', i)
    if "*" in value.rstrip("*") or value.endswith("**"):
        raise QueryError("a * wildcard may only end the last word of a phrase", i)
    j = end + 1
    slop: int | None = None
    if j < len(text) and text[j] == "~":
        m = re.match(r"\d+", text[j + 1 :])
        if not m:
            raise QueryError('write the proximity as "a b"~10 (a number after ~)', j)
        slop = int(m.group())
        if slop > MAX_DISTANCE:
            raise QueryError(f"proximity {slop} is too large; use at most {MAX_DISTANCE}", j)
        j += 1 + len(m.group())
    return _Tok("PHRASE", value, i, slop), j


def _lex_regex(text: str, i: int) -> tuple[_Tok, int]:
    j = i + 1
    out: list[str] = []
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text) and text[j + 1] == "/":
            out.append("/")
            j += 2
            continue
        if ch == "/":
            pattern = "".join(out)
            if not pattern:
                raise QueryError("empty regular expression //", i)
            return _Tok("REGEX", pattern, i), j + 1
        out.append(ch)
        j += 1
    raise QueryError("unclosed regular expression: end it with / (write \\/ for a slash)", i)


def _lex_word(text: str, i: int) -> tuple[_Tok, int]:
    j = i
    while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
        if text[j] == ":":
            head = text[i:j]
            if head in FIELDS:
                return _Tok("FIELD", head, i), j + 1
            if head.isalpha():
                raise QueryError(
                    f"unknown field '{head}:'; use title:, summary:, source: or url: "
                    '(or quote the text, "like:this", to search for a colon)',
                    i,
                )
        j += 1
    word = text[i:j]
    if word in OPERATORS:
        return _Tok(word, word, i), j
    near = _NEAR_RE.match(word)
    if near:
        distance = int(near.group(1))
        if distance > MAX_DISTANCE:
            raise QueryError(f"NEAR/{distance} is too large; use at most {MAX_DISTANCE}", i)
        return _Tok("NEAR", word, i, distance), j
    if word.startswith("NEAR/") or word == "NEAR":
        raise QueryError("write proximity as NEAR/10 (a number of words)", i)
    prefix = word.endswith("*")
    body = word[:-1] if prefix else word
    if "*" in body:
        raise QueryError("a * wildcard may only end a word, as in launch*", i)
    if "~" in body:
        raise QueryError('proximity applies to phrases: write "a b"~10', i)
    if not fold_term(body):
        raise QueryError(f"'{word}' has no letters or digits to match; quote or remove it", i)
    return _Tok("WORD", body, i, prefix=prefix), j


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            toks.append(_Tok("LPAREN", ch, i))
            i += 1
        elif ch == ")":
            toks.append(_Tok("RPAREN", ch, i))
            i += 1
        elif ch == '"':
            tok, i = _lex_phrase(text, i)
            toks.append(tok)
        elif ch == "/":
            tok, i = _lex_regex(text, i)
            toks.append(tok)
        elif ch == "@":
            m = _ALIAS_RE.match(text, i + 1)
            if not m:
                raise QueryError("write an alias as @name (letters, digits, - and _)", i)
            toks.append(_Tok("ALIAS", m.group(), i))
            i = m.end()
        elif ch == "-" and i + 1 < n and not text[i + 1].isspace():
            toks.append(_Tok("MINUS", ch, i))
            i += 1
        else:
            tok, i = _lex_word(text, i)
            toks.append(tok)
    toks.append(_Tok("END", "", n))
    return toks


# ------------------------------------------------------------------------------ parser

_STARTS = {"WORD", "PHRASE", "ALIAS", "REGEX", "FIELD", "LPAREN", "NOT", "MINUS"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _lex(text)
        self.i = 0
        self.depth = 0  # nesting levels open at the current token

    def enter(self, tok: _Tok) -> None:
        """Open one nesting level at `tok`; refuse a query nested deeper than MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(
                f"the query nests deeper than {MAX_DEPTH} levels (parentheses, NOT, fields and "
                "NEAR chains); write it flatter, e.g. as an OR list or an alias",
                tok.pos,
            )

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "END":
            raise QueryError("empty query: write at least one word or phrase", 0)
        node = self.parse_or()
        tok = self.peek()
        if tok.kind == "RPAREN":
            raise QueryError("unmatched ')': remove it or add a '(' before", tok.pos)
        if tok.kind != "END":
            raise QueryError(f"unexpected '{tok.value}'", tok.pos)
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.peek().kind == "OR":
            self.take()
            self.expect_operand("OR")
            items.append(self.parse_and())
        return make_or(items)

    def parse_and(self) -> Node:
        items = [self.parse_near()]
        while True:
            tok = self.peek()
            if tok.kind == "AND":
                self.take()
                self.expect_operand("AND")
                items.append(self.parse_near())
            elif tok.kind in _STARTS:
                items.append(self.parse_near())
            else:
                return make_and(items)

    def parse_near(self) -> Node:
        left = self.parse_unary()
        chain = 0  # a NEAR chain nests to the left: each link is one level more
        while self.peek().kind == "NEAR":
            tok = self.take()
            self.enter(tok)
            chain += 1
            self.expect_operand(tok.value)
            right = self.parse_unary()
            for side in (left, right):
                if not is_positional(side):
                    raise QueryError(
                        "NEAR joins words, phrases, aliases, /regex/ or OR-groups of them "
                        "(not NOT or AND)",
                        tok.pos,
                    )
            assert tok.number is not None
            left = Near(left, right, tok.number)
        self.depth -= chain
        return left

    def expect_operand(self, after: str) -> None:
        tok = self.peek()
        if tok.kind not in _STARTS:
            where = "the end" if tok.kind == "END" else f"'{tok.value}'"
            raise QueryError(
                f"expected a word, phrase or '(' after {after}, found {where}", tok.pos
            )

    def parse_unary(self, in_field: bool = False) -> Node:
        tok = self.peek()
        if tok.kind in ("NOT", "MINUS"):
            self.take()
            self.enter(tok)
            self.expect_operand("NOT" if tok.kind == "NOT" else "-")
            negated = Not(self.parse_unary(in_field))
            self.depth -= 1
            return negated
        if tok.kind == "FIELD":
            self.take()
            if in_field:
                raise QueryError("a field cannot be nested inside another field", tok.pos)
            self.enter(tok)
            self.expect_operand(tok.value + ":")
            field = Field(tok.value, self.parse_unary(in_field=True))
            self.depth -= 1
            return field
        return self.parse_primary(in_field)

    def parse_primary(self, in_field: bool) -> Node:
        tok = self.take()
        if tok.kind == "LPAREN":
            self.enter(tok)
            self.expect_operand("(")
            saved = self.i
            node = self.parse_or()
            self.depth -= 1
            if in_field:
                _reject_nested_field(node, self.toks[saved].pos)
            close = self.take()
            if close.kind != "RPAREN":
                raise QueryError("missing ')': close the group opened here", tok.pos)
            return node
        if tok.kind == "WORD":
            return Term(tok.value, tok.prefix)
        if tok.kind == "PHRASE":
            return Phrase(tok.value, tok.number)
        if tok.kind == "ALIAS":
            return Alias(tok.value)
        if tok.kind == "REGEX":
            return Regex(tok.value)
        where = "the end" if tok.kind == "END" else f"'{tok.value}'"
        raise QueryError(f"expected a word, phrase or '(' but found {where}", tok.pos)


def _reject_nested_field(node: Node, pos: int) -> None:
    if isinstance(node, Field):
        raise QueryError("a field cannot be nested inside another field", pos)
    for child in _children(node):
        _reject_nested_field(child, pos)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, And | Or):
        return node.children
    if isinstance(node, Not | Field):
        return (node.child,)
    if isinstance(node, Near):
        return (node.left, node.right)
    return ()


def parse(text: str) -> Node:
    """Parse query text; raises QueryError naming the column and what to write instead."""
    return _Parser(text).parse()


# ------------------------------------------------------------------------------ printer

_PREC = {Or: 1, And: 2, Near: 3}


def _prec(node: Node) -> int:
    return _PREC.get(type(node), 4)


def _wrap(node: Node, minimum: int) -> str:
    text = to_string(node)
    return f"({text})" if _prec(node) < minimum else text


def to_string(node: Node) -> str:
    """Canonical query text; `parse(to_string(n)) == n` for every parsed node."""
    if isinstance(node, Term):
        return node.text + ("*" if node.prefix else "")
    if isinstance(node, Phrase):
        return f'"{node.text}"' + (f"~{node.slop}" if node.slop is not None else "")
    if isinstance(node, Alias):
        return "@" + node.name
    if isinstance(node, Regex):
        return "/" + node.pattern.replace("/", "\\/") + "/"
    if isinstance(node, Field):
        return f"{node.field}:{_wrap(node.child, 4)}"
    if isinstance(node, Not):
        return "NOT " + _wrap(node.child, 4)
    if isinstance(node, And):
        return " AND ".join(_wrap(child, 3) for child in node.children)
    if isinstance(node, Or):
        return " OR ".join(_wrap(child, 2) for child in node.children)
    # Near is left-associative: a chain on the left needs no parentheses.
    left = _wrap(node.left, 3)
    right = _wrap(node.right, 4)
    return f"{left} NEAR/{node.distance} {right}"


def aliases_used(node: Node) -> set[str]:
    """Alias names a query refers to (to report unknown ones before compiling)."""
    found = {node.name} if isinstance(node, Alias) else set()
    for child in _children(node):
        found |= aliases_used(child)
    return found
