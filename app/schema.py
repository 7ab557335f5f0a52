"""The store schema revision (Alembic head) and the application version that go into archives."""
from functools import cache
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

APP_VERSION = "0.1.0"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@cache
def code_revision():
    """The schema revision this code expects: the single head of the migration scripts."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()
