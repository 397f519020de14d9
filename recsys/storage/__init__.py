"""Storage behind small interfaces: a SQL database (SQLAlchemy) and an object store."""
