"""The watchlist query language: `syntax` (lexer, parser, AST, printer), `evaluate` (compiled
evaluators and the document they run on), `matcher` (all watchlists against one article with a
literal prefilter, scores, snippets and explanations). Pure: no I/O."""
