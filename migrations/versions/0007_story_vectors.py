"""Stories by event: each article's text vector and language (story_vector) and its SimHash band
keys (story_vector_band), the vector signal of story grouping.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 14:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel types)
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('story_vector',
    sa.Column('article_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('article_id', name=op.f('pk_story_vector'))
    )
    op.create_index(op.f('ix_story_vector_story_id'), 'story_vector', ['story_id'], unique=False)
    op.create_table('story_vector_band',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('band', sa.BigInteger(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_story_vector_band'))
    )
    op.create_index('ix_story_vector_band_band', 'story_vector_band', ['band', 'created_at', 'article_id', 'story_id'], unique=False)
    op.create_index(op.f('ix_story_vector_band_article_id'), 'story_vector_band', ['article_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_story_vector_band_article_id'), table_name='story_vector_band')
    op.drop_index('ix_story_vector_band_band', table_name='story_vector_band')
    op.drop_table('story_vector_band')
    op.drop_index(op.f('ix_story_vector_story_id'), table_name='story_vector')
    op.drop_table('story_vector')
