"""PostgreSQL: a site's lock and version in one call; outbox commits announced by a trigger

Each visitor batch is a transaction of a dozen statements, and while the web loop is busy with
handshakes every round trip waits for a turn of the loop: the statements, not PostgreSQL, set the
pace of a batch. Two of them go:
- `calltracking_lock_site(key, site)` takes the site's transaction-scoped advisory lock and then
  reads `sites.state_version`. Being a volatile PL/pgSQL function, its read takes a snapshot
  after the lock is granted, so it sees what the previous holder committed (one `SELECT` of
  both, lock and subquery, would read a snapshot taken before waiting for the lock).
- A statement trigger on `outbox` sends `NOTIFY calltracking_outbox` (store/outbox_watch.py)
  instead of the application sending it after the first outbox insert. PostgreSQL folds the
  duplicates of a transaction into one notification and delivers it on commit only, as before.

SQLite: nothing (its writers are serial, and no other process listens).

Revision ID: 0007a
Revises: 0006a
"""

from alembic import op

revision = "0007a"
down_revision = "0006a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION calltracking_lock_site(lock_key bigint, site text) RETURNS integer
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            RETURN (SELECT state_version FROM sites WHERE id = site);
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION calltracking_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NOTIFY calltracking_outbox;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION calltracking_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION calltracking_outbox_notify()")
    op.execute("DROP FUNCTION calltracking_lock_site(bigint, text)")
