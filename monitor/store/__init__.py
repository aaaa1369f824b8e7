"""Storage: the only package that imports SQLAlchemy/SQLModel and knows the rows of `tables.py`.

One module per aggregate: `sources`, `articles`, `stories`, `alerts` (the outbox), `status` (read
models) and `replicas`; `db` builds engines and migrates. Functions taking a `Session` join the
caller's transaction (a poll's one fenced write, `db.transaction`); those taking an `Engine` run
in a transaction of their own. All of them return frozen values, never rows.
"""
