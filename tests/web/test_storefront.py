"""The storefront shows products and their images, and a 503 page during maintenance."""
from decimal import Decimal

from app.extensions import db
from app.maintenance import set_maintenance
from app.models import Product, ProductImage


def add_product(app, tmp_path):
    with app.app_context():
        product = Product(sku="MUG-1", name="Blue Mug", price=Decimal("9.50"))
        product.images.append(ProductImage(path="products/mug.png", alt="Blue Mug"))
        db.session.add(product)
        db.session.commit()
    image = tmp_path / "uploads" / "products" / "mug.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"\x89PNG fake bytes")


def test_storefront_lists_products_with_images(app, client, tmp_path):
    add_product(app, tmp_path)
    page = client.get("/")
    assert page.status_code == 200
    assert b"Blue Mug" in page.data and b'src="/uploads/products/mug.png"' in page.data
    with client.get("/uploads/products/mug.png") as image:
        assert image.status_code == 200 and image.data == b"\x89PNG fake bytes"


def test_uploads_route_refuses_paths_outside_the_folder(app, client, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    assert client.get("/uploads/../secret.txt").status_code == 404
    assert client.get("/uploads/%2e%2e/secret.txt").status_code == 404


def test_maintenance_page_while_admin_stays_usable(app, client, as_role, tmp_path):
    add_product(app, tmp_path)
    with app.app_context():
        set_maintenance(True, "restore")
    page = client.get("/")
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "120"
    assert b"be right back" in page.data and b"Blue Mug" not in page.data
    as_role("super_admin")
    assert client.get("/admin/tools/backup/").status_code == 200
    with app.app_context():
        set_maintenance(False)
    assert client.get("/").status_code == 200


def test_maintenance_left_by_a_dead_worker_expires(app, client):
    with app.app_context():
        set_maintenance(True, "restore", ttl_seconds=-1)
    assert client.get("/").status_code == 200
