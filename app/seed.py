"""Demo data: users of every role, products with real PNG images, orders, carts and settings."""
import random
import struct
import zlib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from app.extensions import db
from app.models import (
    Cart, CartLine, MaintainerNetwork, Order, OrderLine, PlatformOperator, Product, ProductImage, Setting, User,
)
from app.models.store import utcnow

DEMO_PASSWORD = "demo1234"
DEMO_USERS = {
    "super@demo.test": "super_admin",
    "admin@demo.test": "admin",
    "manager@demo.test": "manager",
    "vendor@demo.test": "vendor",
}
DEMO_OPERATOR = "platform@demo.test"
DEMO_NETWORKS = {"127.0.0.1/32": "This machine (IPv4)", "::1/128": "This machine (IPv6)"}

ADJECTIVES = ["Classic", "Organic", "Handmade", "Vintage", "Compact", "Deluxe", "Everyday", "Travel", "Cozy", "Bold"]
NOUNS = ["Mug", "Tote Bag", "Notebook", "Candle", "Scarf", "Lamp", "Teapot", "Backpack", "Poster", "Planter"]


def png_bytes(width, height, seed):
    """A small gradient PNG, different for every seed: a real image file for the demo store."""
    rng = random.Random(seed)
    base = [rng.randrange(40, 216) for _ in range(3)]
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type: none
        for x in range(width):
            shade = (x + y) * 64 // (width + height)
            row += bytes(min(255, c + shade) for c in base)
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def store_is_empty():
    return db.session.scalar(db.select(db.func.count()).select_from(User)) == 0


def seed_demo(uploads_dir, products=50, orders=300, rng=None):
    rng = rng or random.Random(7)
    uploads = Path(uploads_dir)
    (uploads / "products").mkdir(parents=True, exist_ok=True)

    users = []
    for email, role in DEMO_USERS.items():
        user = User(email=email, role=role)
        user.set_password(DEMO_PASSWORD)
        users.append(user)
    db.session.add_all(users)

    catalog = []
    for n in range(1, products + 1):
        name = f"{ADJECTIVES[n % len(ADJECTIVES)]} {NOUNS[(n // len(ADJECTIVES)) % len(NOUNS)]} {n}"
        product = Product(
            sku=f"SKU-{n:04d}", name=name, description=f"A demo product: {name.lower()}.",
            price=Decimal(rng.randrange(500, 9900)) / 100, stock=rng.randrange(0, 80),
        )
        relative = f"products/{n:04d}.png"
        (uploads / relative).write_bytes(png_bytes(96, 96, n))
        product.images.append(ProductImage(path=relative, alt=name, position=0))
        catalog.append(product)
    db.session.add_all(catalog)
    db.session.flush()  # product ids for the lines below

    now = utcnow()
    for n in range(1, orders + 1):
        order = Order(number=f"ORD-{n:06d}", customer_email=f"customer{rng.randrange(1, 120)}@example.com",
                      status=rng.choice(["paid", "shipped", "delivered", "refunded"]), total=Decimal(0),
                      placed_at=now - timedelta(hours=orders - n))
        for product in rng.sample(catalog, rng.randrange(1, 4)):
            line = OrderLine(product_id=product.id, quantity=rng.randrange(1, 4), unit_price=product.price)
            order.lines.append(line)
            order.total += line.unit_price * line.quantity
        db.session.add(order)

    for _ in range(12):
        cart = Cart(user_id=None)
        for product in rng.sample(catalog, 2):
            cart.lines.append(CartLine(product_id=product.id, quantity=1))
        db.session.add(cart)

    db.session.add_all([
        Setting(key="store.title", value="Demo Store"),
        Setting(key="store.currency", value="EUR"),
        Setting(key="payments.api_key", value="sk_live_demo_0123456789abcdef", is_secret=True),
        Setting(key="mail.smtp_password", value="demo-smtp-password", is_secret=True),
    ])
    db.session.commit()


def seed_platform():
    if db.session.scalar(db.select(PlatformOperator).where(PlatformOperator.email == DEMO_OPERATOR)) is None:
        operator = PlatformOperator(email=DEMO_OPERATOR)
        operator.set_password(DEMO_PASSWORD)
        db.session.add(operator)
    for cidr, label in DEMO_NETWORKS.items():
        if db.session.scalar(db.select(MaintainerNetwork).where(MaintainerNetwork.cidr == cidr)) is None:
            db.session.add(MaintainerNetwork(cidr=cidr, label=label, added_by="seed-demo"))
    db.session.commit()
