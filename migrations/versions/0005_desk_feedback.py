"""Desk feedback: labels (relevant / not relevant) and story mutes from the alert itself.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 09:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel types)
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('watchlist_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=True),
    sa.Column('story_id', sa.Integer(), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('user_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('via', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('destination', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('request_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('active_key', sqlmodel.sql.sqltypes.AutoString(length=600), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('undone_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('undone_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('rejected_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('rejected_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback')),
    sa.UniqueConstraint('active_key', name=op.f('uq_feedback_active_key')),
    sa.UniqueConstraint('request_key', name=op.f('uq_feedback_request_key'))
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_feedback_story_id'), ['story_id'], unique=False)
        batch_op.create_index('ix_feedback_watchlist_created', ['watchlist_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index('ix_feedback_watchlist_created')
        batch_op.drop_index(batch_op.f('ix_feedback_story_id'))
        batch_op.drop_index(batch_op.f('ix_feedback_alert_id'))
    op.drop_table('feedback')
