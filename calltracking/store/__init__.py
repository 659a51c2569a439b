"""Storage: SQLAlchemy (async) on SQLite or PostgreSQL, migrations, and the queries the services
use. Every change and its outbox events are written in one transaction."""
