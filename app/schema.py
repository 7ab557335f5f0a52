"""The store schema revision and the application version that go into archives.

Archives are stamped with the revision of the newest migration that changed the store's tables. A
migration that only touches platform tables says so (``STORE_SCHEMA_CHANGED = False`` in its module):
it moves the migration head, not the store schema, so backups made before it still restore.
"""
from functools import cache
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

APP_VERSION = "0.2.0"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _scripts():
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


@cache
def migrations_head():
    """The single head of the migration scripts: what `flask db upgrade` brings both databases to."""
    return _scripts().get_current_head()


@cache
def code_revision():
    """The store schema revision this code expects: the newest migration that changed store tables."""
    for script in _scripts().walk_revisions():  # from the head down
        if getattr(script.module, "STORE_SCHEMA_CHANGED", True):
            return script.revision
    raise RuntimeError("No migration creates the store's tables")
