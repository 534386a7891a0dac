"""Alembic migrations shipped with convostore (run them with ``convostore db upgrade``)."""
