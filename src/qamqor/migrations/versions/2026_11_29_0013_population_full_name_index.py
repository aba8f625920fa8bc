"""profiles: the namesakes of a micro-batch found by one index key on PostgreSQL

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 22:30:00

The duplicate-person check compares people with the same full name and birth date. A worker
cycle looks up the namesakes of every member of its households (~9,600 names for 2,500
events); on the ``(birth_date, last_name)`` index that was one forced nested-loop probe per
name, 175-185 ms of the server a cycle. An expression index on the whole name as one key lets
``= ANY(array)`` find them in one index scan: 62 ms for the same names (EXPLAIN ANALYZE on the
benchmark's million households, warm; 92 against 146 ms as the worker runs it). The key is
``registry.models.FULL_NAME_KEY``, written as PostgreSQL prints it back, so that Alembic's
comparison of models and database sees the same expression; this file keeps its own copy, as
a migration must not change when the code does. PostgreSQL only: SQLite's route keeps its IN
lists on the two columns.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = (
    "((((((((birth_date - '2000-01-01'::date)::text) || '|'::text) || last_name::text) "
    "|| '|'::text) || first_name::text) || '|'::text) "
    "|| COALESCE(patronymic, ''::character varying)::text)"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_fact_population_full_name ON fact_population ({KEY})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_fact_population_full_name")
