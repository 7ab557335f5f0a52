"""Product slugs: the rules, the migration that gives existing products one (SQLite and PostgreSQL, through
Flask-Migrate and through plain Alembic), the ORM hook for new products, and the storefront's product page."""
import ast
import importlib.util
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade as flask_downgrade, upgrade as flask_upgrade

from app import create_app
from app.extensions import db
from app.models import Product, ProductImage
from app.models.store import slugify, unique_slug
from app.schema import MIGRATIONS_DIR
from tests.faults.harness import make_engine
from tests.helpers import app_overrides

SLUG_REVISION = "5d1e7a3c9b20"
BEFORE = "9fb2ead63c53"
NAMES = ["Crème brûlée set", "Creme Brulee Set", "  ***  ", "Plain"]
EXPECTED = ["creme-brulee-set", "creme-brulee-set-2", "product", "plain"]
EXAMPLES = ["Crème brûlée set", "  ***  ", "", "Ünïcödé — 日本 🍮 Mug", "ﬁne ½ price", "a_b.c/d\\e", "--x--",
            "x" * 179 + " yz", "y" * 400, "Straße", "Tab\there\nnewline", "100% Cotton T-Shirt (XL)"]


# --- the rules ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, slug", [
    ("Crème brûlée set", "creme-brulee-set"),
    ("Creme Brulee Set", "creme-brulee-set"),
    ("  ***  ", "product"),
    ("", "product"),
    ("日本 🍮", "product"),
    ("Plain", "plain"),
    ("100% Cotton T-Shirt (XL)", "100-cotton-t-shirt-xl"),
    ("--a__b..c--", "a-b-c"),
    ("Ünïcödé Mug", "unicode-mug"),
    ("ﬁne ½", "fine-12"),  # NFKD: the ligature becomes "fi", ½ becomes 1, a non-ASCII fraction slash, 2
    ("Straße", "strae"),  # no decomposition: dropped with the rest of the non-ASCII
])
def test_slug_rules(name, slug):
    assert slugify(name) == slug


def test_long_names_are_cut_to_180_characters():
    assert slugify("a" * 400) == "a" * 180
    assert slugify("Ä" * 400) == "a" * 180
    cut = slugify("x" * 179 + " yz")  # the cut falls right after a hyphen: none is left dangling
    assert cut == "x" * 179 and len(cut) <= 180
    for name in EXAMPLES:
        slug = slugify(name)
        assert len(slug) <= 180 and not slug.startswith("-") and not slug.endswith("-")
        assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and "--" not in slug


def test_duplicates_get_a_number():
    assert unique_slug("mug", set()) == "mug"
    assert unique_slug("mug", {"mug"}) == "mug-2"
    assert unique_slug("mug", {"mug", "mug-2", "mug-3"}) == "mug-4"
    assert unique_slug("mug", {"mug-2"}) == "mug"


def test_the_migration_carries_its_own_copy_of_the_same_rules():
    (path,) = (MIGRATIONS_DIR / "versions").glob(f"{SLUG_REVISION}_*.py")
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names} | {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"re", "unicodedata", "contextlib", "alembic", "sqlalchemy"}  # no app code, no Flask
    spec = importlib.util.spec_from_file_location("slug_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.revision, module.down_revision) == (SLUG_REVISION, BEFORE)
    assert not hasattr(module, "STORE_SCHEMA_CHANGED")
    for name in EXAMPLES + NAMES:
        assert module._slugify(name) == slugify(name), name


# --- the migration ---------------------------------------------------------------------------------------

def _scripts():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config, ScriptDirectory.from_config(config)


def alembic_migrate(connection, revision, direction="upgrade"):
    """Plain Alembic on a bare connection, without Flask or env.py: the store database's migrations."""
    config, script = _scripts()

    def steps(rev, _context):
        if direction == "upgrade":
            return script._upgrade_revs(revision, rev)
        return script._downgrade_revs(revision, rev)

    with EnvironmentContext(config, script, fn=steps, destination_rev=revision) as env:
        env.configure(connection=connection)
        with env.begin_transaction():
            env.run_migrations(engine_name="")


class BareAlembic:
    """An engine of its own (SQLite with foreign keys enforced, like the app's), migrated by plain Alembic."""

    def __init__(self, url):
        self.engine = make_engine(url)

    def migrate(self, revision, direction="upgrade"):
        with self.engine.connect() as connection:
            alembic_migrate(connection, revision, direction)

    def close(self):
        self.engine.dispose()


class FlaskMigrate:
    """`flask db upgrade`/`downgrade` through migrations/env.py, with the app's engines."""

    def __init__(self, url, tmp_path, redis_url):
        self.app = create_app("testing", app_overrides(tmp_path, redis_url, SQLALCHEMY_DATABASE_URI=url))
        with self.app.app_context():
            self.engine = db.engine

    def migrate(self, revision, direction="upgrade"):
        with self.app.app_context():
            (flask_upgrade if direction == "upgrade" else flask_downgrade)(revision=revision)

    def close(self):
        with self.app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture(params=["alembic", "flask"])
def migrator(request, database_url, tmp_path, redis_url):
    runner = BareAlembic(database_url) if request.param == "alembic" else FlaskMigrate(database_url, tmp_path, redis_url)
    yield runner
    runner.close()


def insert_products_before_slugs(engine):
    """Products, an image, an order line and a cart line, as a store at 9fb2ead63c53 would have them."""
    now = datetime(2026, 1, 1, 12, 0, 0)
    md = sa.MetaData()
    md.reflect(engine, only=["products", "product_images", "orders", "order_lines", "carts", "cart_lines"])
    t = md.tables
    assert "slug" not in t["products"].c
    with engine.begin() as c:
        c.execute(t["products"].insert(), [
            {"id": i, "sku": f"S{i}", "name": name, "description": "", "price": Decimal("1.00"), "stock": 1,
             "active": True, "created_at": now} for i, name in enumerate(NAMES, start=1)])
        c.execute(t["product_images"].insert(), [{"id": 1, "product_id": 1, "path": "p/1.png", "alt": "", "position": 0}])
        c.execute(t["orders"].insert(), [{"id": 1, "number": "O1", "customer_email": "c@x.test", "status": "paid",
                                          "total": Decimal("1.00"), "placed_at": now}])
        c.execute(t["order_lines"].insert(), [{"id": 1, "order_id": 1, "product_id": 2, "quantity": 1,
                                               "unit_price": Decimal("1.00")}])
        c.execute(t["carts"].insert(), [{"id": 1, "token": "t", "user_id": None, "updated_at": now}])
        c.execute(t["cart_lines"].insert(), [{"id": 1, "cart_id": 1, "product_id": 3, "quantity": 1}])


def referencing_rows(engine):
    with engine.connect() as c:
        return (c.execute(sa.text("SELECT id, product_id, path FROM product_images")).all(),
                c.execute(sa.text("SELECT id, product_id FROM order_lines")).all(),
                c.execute(sa.text("SELECT id, product_id FROM cart_lines")).all())


def test_the_migration_gives_existing_products_unique_slugs(migrator):
    migrator.migrate(BEFORE)
    engine = migrator.engine
    insert_products_before_slugs(engine)
    children = referencing_rows(engine)
    assert children == ([(1, 1, "p/1.png")], [(1, 2)], [(1, 3)])

    migrator.migrate(SLUG_REVISION)

    with engine.connect() as c:
        assert c.execute(sa.text("SELECT id, slug FROM products ORDER BY id")).all() == list(enumerate(EXPECTED, 1))
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == SLUG_REVISION
    # Rebuilding the table on SQLite must not fire the ON DELETE actions of the tables referencing it.
    assert referencing_rows(engine) == children
    inspector = sa.inspect(engine)
    (slug,) = [col for col in inspector.get_columns("products") if col["name"] == "slug"]
    assert slug["nullable"] is False
    assert {"name": "uq_products_slug", "column_names": ["slug"]}.items() <= next(
        u for u in inspector.get_unique_constraints("products") if u["name"] == "uq_products_slug").items()

    row = {"id": 99, "sku": "NEW", "name": "New", "description": "", "price": 1, "stock": 0, "active": True,
           "created_at": datetime(2026, 1, 2)}
    for bad in ({**row, "slug": "plain"}, row):  # a taken slug, no slug
        with pytest.raises(sa.exc.IntegrityError, match="slug"), engine.begin() as c:
            c.execute(sa.text(f"INSERT INTO products ({', '.join(bad)}) VALUES ({', '.join(':' + k for k in bad)})"),
                      bad)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO products (id, sku, name, slug, description, price, stock, active, created_at) "
                          "VALUES (99, 'NEW', 'New', 'new', '', 1, 0, true, '2026-01-02')"))

    migrator.migrate(BEFORE, direction="downgrade")
    assert "slug" not in {col["name"] for col in sa.inspect(engine).get_columns("products")}
    assert referencing_rows(engine) == children
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM products")).scalar() == 5


def test_the_migration_keeps_referencing_rows_when_run_with_earlier_migrations(tmp_path, redis_url):
    """Upgrading from the first revision in one run: earlier migrations leave a transaction open."""
    migrator = FlaskMigrate(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, redis_url)
    try:
        migrator.migrate("2c3096c25b7f")
        insert_products_before_slugs(migrator.engine)
        children = referencing_rows(migrator.engine)
        migrator.migrate("head")
        assert referencing_rows(migrator.engine) == children
        with migrator.engine.connect() as c:
            assert c.execute(sa.text("SELECT slug FROM products ORDER BY id")).scalars().all() == EXPECTED
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        migrator.close()


# --- new products and the storefront -----------------------------------------------------------------------

def add(app, *products):
    with app.app_context():
        db.session.add_all(products)
        db.session.commit()
        return [p.slug for p in products]


def test_new_products_get_a_unique_slug_from_their_name(app):
    assert add(app, Product(sku="A", name="Blue Mug", price=1), Product(sku="B", name="Blue  mug!", price=1)) == \
        ["blue-mug", "blue-mug-2"]
    assert add(app, Product(sku="C", name="Blue Mug", price=1)) == ["blue-mug-3"]
    assert add(app, Product(sku="D", name="Blue Mug Large", price=1)) == ["blue-mug-large"]
    assert add(app, Product(sku="E", name="***", price=1)) == ["product"]
    # Explicit slugs are kept, and a generated one avoids them even within the same flush.
    assert add(app, Product(sku="F", name="Teapot", price=1), Product(sku="G", name="Other", slug="teapot", price=1)) \
        == ["teapot-2", "teapot"]
    assert add(app, Product(sku="H", name="Anything", slug="my-own-slug", price=1)) == ["my-own-slug"]


def test_the_product_page_shows_an_active_product(app, client, tmp_path):
    with app.app_context():
        product = Product(sku="MUG-1", name="Crème brûlée mug", price=Decimal("9.50"), description="Holds crème.")
        product.images.append(ProductImage(path="products/mug.png", alt="The mug"))
        db.session.add_all([product, Product(sku="OLD", name="Retired mug", price=1, active=False)])
        db.session.commit()
    page = client.get("/products/creme-brulee-mug")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<h1>Crème brûlée mug</h1>" in html and "9.50" in html and "Holds crème." in html
    assert 'src="/uploads/products/mug.png"' in html
    assert 'href="/products/creme-brulee-mug"' in client.get("/").get_data(as_text=True)

    assert client.get("/products/retired-mug").status_code == 404
    assert client.get("/products/no-such-product").status_code == 404
