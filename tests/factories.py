"""Factories: stores for the engine alone (a SQLAlchemy engine, an uploads folder, a backups folder; no Flask)."""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from app import snapshot
from tests.faults.harness import fill, make_engine, metadata, state

KEY = "engine-test-key"
REVISION = "rev-engine-test"


@dataclass
class Store:
    engine: object
    uploads: Path
    backups: Path
    key: str = KEY
    revision: str = REVISION

    @property
    def metadata(self):
        return metadata()

    def state(self):
        return state(self.engine, self.uploads)

    def create(self, kind="backup", parts="both", **extra):
        options = dict(engine=self.engine, metadata=self.metadata, uploads_dir=self.uploads, backups_dir=self.backups,
                       signing_key=self.key, store_name="Test Store", kind=kind, parts=parts, created_by="tester",
                       schema_revision=self.revision, app_version="test")
        if kind == "export":
            options["redactions"] = snapshot.STORE_REDACTIONS
        return snapshot.create_archive(**{**options, **extra})

    def inspect(self, path, **extra):
        return snapshot.inspect_archive(path, **{**dict(signing_key=self.key, schema_revision=self.revision,
                                                        metadata=self.metadata), **extra})

    def restore(self, path, parts="both", **extra):
        return snapshot.restore_archive(path, **{**dict(engine=self.engine, metadata=self.metadata,
                                                        uploads_dir=self.uploads, signing_key=self.key,
                                                        schema_revision=self.revision, parts=parts), **extra})




def awkward_rows(engine):
    """Values that break naive formats: tabs, newlines, backslashes, NULLs, non-ASCII, secrets."""
    t = metadata().tables
    now = datetime(2026, 3, 29, 1, 30, 15, 123456)
    with engine.begin() as c:
        c.execute(t["products"].insert(), [
            {"id": 900, "sku": "TAB\tSKU", "name": "Crème brûlée — 日本 🍮", "slug": "creme-brulee",
             "description": "line1\nline2\r\n\\N \\ end",
             "price": Decimal("12345678.90"), "stock": 0, "active": False, "created_at": now},
            {"id": 901, "sku": "EMPTY", "name": "", "slug": "product", "description": "", "price": Decimal("0.00"),
             "stock": -3, "active": True, "created_at": now}])
        c.execute(t["carts"].insert(), [{"id": 1, "token": "cart-secret-token", "user_id": 1, "updated_at": now},
                                        {"id": 2, "token": "anon-cart-token", "user_id": None, "updated_at": now}])
        c.execute(t["cart_lines"].insert(), [{"id": 1, "cart_id": 1, "product_id": 900, "quantity": 2}])
        c.execute(t["order_lines"].insert(), [{"id": 999_999, "order_id": 1, "product_id": None, "quantity": 1,
                                               "unit_price": Decimal("0.01")}])
        c.execute(t["settings"].insert(), [{"key": "payment_api_key", "value": "sk_live_TOPSECRET", "is_secret": True},
                                           {"key": "store_title", "value": "Visible title", "is_secret": False}])


def new_store(url, root):
    store = Store(make_engine(url), Path(root, "uploads"), Path(root, "backups"))
    store.uploads.mkdir(parents=True, exist_ok=True)
    return store


def filled(store, orders=3000, files=20):
    fill(store.engine, store.uploads, orders=orders, files=files)
    awkward_rows(store.engine)
    Path(store.uploads, "deep", "er", "still").mkdir(parents=True)
    Path(store.uploads, "deep", "er", "still", "name with spaces & ünïcode.txt").write_text("deep file")
    Path(store.uploads, "empty.bin").write_bytes(b"")
    return store

