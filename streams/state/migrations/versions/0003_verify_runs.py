"""Verify runs and the checkpoints of their key ranges.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "verify_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("template_path", sa.String(1024), nullable=False),
        sa.Column("template_text", sa.Text(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("database", sa.String(64), nullable=False),
        sa.Column("collections", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_verify_runs"),
    )
    op.create_index("ix_verify_runs_finished_at", "verify_runs", ["finished_at"])
    op.create_table(
        "verify_ranges",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("upto", sa.JSON(), nullable=True),
        sa.Column("planned_rows", sa.Integer(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("reads", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("source_documents", sa.Integer(), nullable=False),
        sa.Column("target_documents", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("extra", sa.Integer(), nullable=False),
        sa.Column("different", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("mismatched", sa.Integer(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "collection", "number", name="pk_verify_ranges"),
        sa.ForeignKeyConstraint(["run_id"], ["verify_runs.id"], name="fk_verify_ranges_run_id_verify_runs",
                                ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("verify_ranges")
    op.drop_index("ix_verify_runs_finished_at", "verify_runs")
    op.drop_table("verify_runs")
