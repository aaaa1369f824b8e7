"""Watchlists that learn: labelled examples (`examples`), a local text model (`embed`), the
features the model weighs (`features`), a classifier per watchlist (`classifier`) and the live
set of models the pipeline judges with (`models`).

The query stays the cheap, explainable recall gate; a watchlist with examples alerts only when
its model, trained on those examples, is confident enough. A watchlist without examples
behaves exactly as before.
"""
