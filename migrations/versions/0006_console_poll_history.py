"""Console: a short history of each source's polls (poll_event), and indexes for the console's
pages (a watchlist's newest alerts, a source's newest articles, the outbox counts).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel types)
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('poll_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('polled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('new_entries', sa.Integer(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_event'))
    )
    op.create_index('ix_poll_event_source_recent', 'poll_event', ['source_id', 'id'], unique=False)
    op.create_index('ix_alert_watchlist_recent', 'alert', ['watchlist_id', 'id'], unique=False)
    op.create_index('ix_alert_channel_status', 'alert', ['channel', 'status'], unique=False)
    op.create_index('ix_alert_created_watchlist', 'alert', ['created_at', 'watchlist_id', 'kind'], unique=False)
    op.create_index('ix_article_source_recent', 'article', ['source_id', 'first_seen'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_article_source_recent', table_name='article')
    op.drop_index('ix_alert_created_watchlist', table_name='alert')
    op.drop_index('ix_alert_channel_status', table_name='alert')
    op.drop_index('ix_alert_watchlist_recent', table_name='alert')
    op.drop_index('ix_poll_event_source_recent', table_name='poll_event')
    op.drop_table('poll_event')
