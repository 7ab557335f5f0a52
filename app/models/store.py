"""Store models: everything a backup captures and a restore replaces."""
import re
import secrets
import unicodedata
from datetime import datetime, timezone
from decimal import Decimal

from flask_login import UserMixin
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, Numeric, String, Text, event
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db

ROLES = ("vendor", "manager", "admin", "super_admin")


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_token():
    return secrets.token_hex(16)


SLUG_MAX = 180
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(name):
    """A product's URL slug: ASCII letters and digits joined by single hyphens, at most 180 characters.

    "Crème brûlée set" -> "creme-brulee-set"; nothing usable ("  ***  ", "") -> "product".
    The migration that added slugs (5d1e7a3c9b20) keeps its own frozen copy of these rules.
    """
    text = unicodedata.normalize("NFKD", name or "")
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    slug = _NOT_SLUG.sub("-", text).strip("-")
    return slug[:SLUG_MAX].rstrip("-") or "product"


def unique_slug(base, taken):
    """base, or base-2, base-3, ...: the first that is not in taken."""
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="vendor")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Part of the login session id: rotating it logs the user out everywhere.
    session_token: Mapped[str] = mapped_column(String(64), default=new_token)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self):
        return self.active

    @property
    def is_super_admin(self):
        return self.role == "super_admin"

    def get_id(self):
        return f"user:{self.id}:{self.session_token}"

    def __repr__(self):
        return f"<User {self.email} {self.role}>"


class Product(db.Model):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    stock: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Last, like the column the migration added: the storefront's /products/<slug>. Set from the name
    # on insert when not given (see _give_new_products_a_slug).
    slug: Mapped[str] = mapped_column(String(200), unique=True)

    images: Mapped[list["ProductImage"]] = relationship(
        back_populates="product", order_by="ProductImage.position", cascade="all, delete-orphan"
    )


class ProductImage(db.Model):
    __tablename__ = "product_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    # Path relative to UPLOADS_DIR, always with forward slashes.
    path: Mapped[str] = mapped_column(String(500))
    alt: Mapped[str] = mapped_column(String(200), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship(back_populates="images")


class Order(db.Model):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_email: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default="paid")
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    placed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    lines: Mapped[list["OrderLine"]] = relationship(back_populates="order", cascade="all, delete-orphan")


class OrderLine(db.Model):
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"), nullable=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))

    order: Mapped[Order] = relationship(back_populates="lines")


class Cart(db.Model):
    __tablename__ = "carts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_token)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    lines: Mapped[list["CartLine"]] = relationship(back_populates="cart", cascade="all, delete-orphan")


class CartLine(db.Model):
    __tablename__ = "cart_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(Integer)

    cart: Mapped[Cart] = relationship(back_populates="lines")


class Setting(db.Model):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    is_secret: Mapped[bool] = mapped_column(Boolean, default=False)


@event.listens_for(User.role, "set")
@event.listens_for(User.active, "set")
def _end_sessions_on_privilege_change(user, value, old_value, _initiator):
    """A role change or deactivation logs the user out everywhere: old sessions carry the old token."""
    if old_value not in (NO_VALUE, NEVER_SET) and value != old_value:
        user.session_token = new_token()


_PENDING_SLUGS = "product_slugs_in_flush"


@event.listens_for(Product, "before_insert")
def _give_new_products_a_slug(_mapper, connection, product):
    """A product inserted without a slug gets one from its name, unique among the stored products and the
    ones inserted in the same flush (whose rows are not written yet when this runs)."""
    session = object_session(product)
    pending = session.info.setdefault(_PENDING_SLUGS, set()) if session is not None else set()
    if product.slug:
        pending.add(product.slug)
        return
    base = slugify(product.name)
    column = Product.__table__.c.slug
    stored = connection.execute(
        db.select(column).where((column == base) | column.startswith(f"{base}-", autoescape=True))
    ).scalars()
    # Explicit slugs of products later in this flush count too.
    explicit = {p.slug for p in (session.new if session is not None else ()) if isinstance(p, Product) and p.slug}
    product.slug = unique_slug(base, set(stored) | pending | explicit)
    pending.add(product.slug)


@event.listens_for(Session, "after_flush_postexec")
@event.listens_for(Session, "after_soft_rollback")
def _forget_pending_slugs(session, *_args):
    session.info.pop(_PENDING_SLUGS, None)
