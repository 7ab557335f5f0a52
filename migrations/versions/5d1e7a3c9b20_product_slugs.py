"""product slugs

Revision ID: 5d1e7a3c9b20
Revises: 9fb2ead63c53
Create Date: 2026-11-27 10:00:00.000000

"""
import re
import unicodedata
from contextlib import contextmanager

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d1e7a3c9b20'
down_revision = '9fb2ead63c53'
branch_labels = None
depends_on = None

# Changes a store table (products.slug): archives made from now on carry this store schema revision.
# No STORE_SCHEMA_CHANGED = False here.


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


# A frozen copy of the slug rules as they were when this migration was written: migrations are history
# and never import app code, which may change later.
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _slugify(name):
    text = unicodedata.normalize("NFKD", name or "")
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    slug = _NOT_SLUG.sub("-", text).strip("-")
    return slug[:180].rstrip("-") or "product"


def _products():
    return sa.table('products', sa.column('id', sa.Integer()), sa.column('name', sa.String(200)),
                    sa.column('slug', sa.String(200)))


def _fill_slugs():
    """Every existing product gets a slug from its name; duplicates get -2, -3, ... in id order."""
    bind = op.get_bind()
    products = _products()
    rows = bind.execute(sa.select(products.c.id, products.c.name).order_by(products.c.id)).all()
    taken = set()
    updates = []
    for product_id, name in rows:
        base = slug = _slugify(name)
        n = 1
        while slug in taken:
            n += 1
            slug = "%s-%d" % (base, n)
        taken.add(slug)
        updates.append({"product_id": product_id, "new_slug": slug})
    if updates:
        bind.execute(
            products.update().where(products.c.id == sa.bindparam("product_id")).values(slug=sa.bindparam("new_slug")),
            updates,
        )


@contextmanager
def _sqlite_foreign_keys_off():
    """SQLite rebuilds the products table for NOT NULL and UNIQUE (batch mode: copy, DROP, rename). With
    foreign keys enforced (the app turns them on for every connection), that DROP TABLE runs the ON DELETE
    actions of the tables referencing products: product images and cart lines deleted, order lines
    unlinked. So enforcement is off for the rebuild, and the rows are checked before it is back on.

    The pragma is ignored inside a transaction, so what the migrations before this one did is committed
    first, as Alembic's autocommit_block would (that needs a transaction Alembic began itself; Flask-Migrate's
    env.py begins its own). Elsewhere (PostgreSQL, SQLite without enforcement) this does nothing.
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite" or not bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        yield
        return
    dbapi_connection = bind.connection.dbapi_connection
    dbapi_connection.commit()
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError("SQLite foreign key enforcement could not be turned off to rebuild products")
        yield
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError("Rebuilding products broke foreign keys: %r" % (broken[:10],))
        dbapi_connection.commit()
    except BaseException:
        dbapi_connection.rollback()
        raise
    finally:
        bind.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade_():
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slug', sa.String(length=200), nullable=True))

    _fill_slugs()

    with _sqlite_foreign_keys_off():
        with op.batch_alter_table('products', schema=None) as batch_op:
            batch_op.alter_column('slug', existing_type=sa.String(length=200), nullable=False)
            batch_op.create_unique_constraint('uq_products_slug', ['slug'])


def downgrade_():
    with _sqlite_foreign_keys_off():
        with op.batch_alter_table('products', schema=None) as batch_op:
            batch_op.drop_constraint('uq_products_slug', type_='unique')
            batch_op.drop_column('slug')


def upgrade_platform():
    pass


def downgrade_platform():
    pass
