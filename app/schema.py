"""The store schema revision and the application version that go into archives.

Archives are stamped with the revision of the newest migration that changed the store's tables. A
migration that only touches platform tables says so (``STORE_SCHEMA_CHANGED = False`` in its module):
it moves the migration head, not the store schema, so backups made before it still restore.
"""
from functools import cache
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
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


def migrations_after(revision):
    """The migrations that bring a store at ``revision`` to today's store revision, oldest first; None when
    ``revision`` is not an older revision of this code (a newer archive, another application's, or today's)."""
    chain = [script.revision for script in _scripts().walk_revisions(base="base", head=code_revision())]
    if revision not in chain or revision == code_revision():  # chain runs from today's down to the first
        return None
    return list(reversed(chain[:chain.index(revision)]))


def upgrade_store(connection, revision):
    """Run the store's migrations (never the platform's) up to ``revision`` on ``connection``: a scratch
    database, with Alembic alone (no Flask, no env.py). ``revision`` must be one of ours, not an expression."""
    scripts = _scripts()
    if revision not in {script.revision for script in scripts.walk_revisions()}:
        raise ValueError(f"unknown revision {revision!r}")
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def steps(current, _context):
        return scripts._upgrade_revs(revision, current)

    with EnvironmentContext(config, scripts, fn=steps, destination_rev=revision) as environment:
        environment.configure(connection=connection, upgrade_token="_upgrades", downgrade_token="_downgrades")
        with environment.begin_transaction():
            environment.run_migrations(engine_name="")
