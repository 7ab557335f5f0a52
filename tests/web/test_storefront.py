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


ACTIVE_CONTENT = {
    "restored/page.html": b"<script>fetch('/admin/tools/backup/')</script>",
    "restored/PAGE.HTM": b"<script>alert(1)</script>",
    "restored/logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "restored/app.js": b"alert(document.cookie)",
    "restored/README": b"<html><script>alert(1)</script></html>",
    "restored/page.png.html": b"<script>alert(1)</script>",
}


def write_upload(tmp_path, name, data):
    path = tmp_path / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_uploaded_active_content_is_sandboxed_and_downloaded(app, client, tmp_path):
    for name, data in ACTIVE_CONTENT.items():
        write_upload(tmp_path, name, data)
        with client.get(f"/uploads/{name}") as response:
            assert response.status_code == 200, name
            assert response.data == data
            assert response.headers["Content-Security-Policy"] == "sandbox", name
            assert response.headers["X-Content-Type-Options"] == "nosniff", name
            assert response.headers["Content-Disposition"].startswith("attachment"), name
            assert response.mimetype == "application/octet-stream", (name, response.mimetype)


def test_safe_images_and_pdf_are_shown_inline_but_sandboxed(app, client, tmp_path):
    for name, mimetype in [("products/mug.png", "image/png"), ("products/MUG.JPG", "image/jpeg"),
                           ("products/mug.jpeg", "image/jpeg"), ("products/mug.gif", "image/gif"),
                           ("products/mug.webp", "image/webp"), ("products/mug.avif", "image/avif"),
                           ("docs/manual.pdf", "application/pdf")]:
        write_upload(tmp_path, name, b"bytes of " + name.encode())
        with client.get(f"/uploads/{name}") as response:
            assert response.status_code == 200, name
            assert response.mimetype == mimetype, name
            assert not response.headers.get("Content-Disposition", "inline").startswith("attachment"), name
            assert response.headers["Content-Security-Policy"] == "sandbox", name
            assert response.headers["X-Content-Type-Options"] == "nosniff", name


def test_an_html_file_named_like_an_image_is_not_sniffed(app, client, tmp_path):
    write_upload(tmp_path, "products/evil.png", b"<html><script>alert(1)</script></html>")
    with client.get("/uploads/products/evil.png") as response:
        assert response.mimetype == "image/png"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == "sandbox"


def test_uploads_route_still_refuses_traversal(app, client, tmp_path):
    (tmp_path / "secret.html").write_text("<script>secret</script>")
    for url in ("/uploads/../secret.html", "/uploads/%2e%2e/secret.html", "/uploads/..%2fsecret.html",
                f"/uploads/{tmp_path}/secret.html", "/uploads/products/../../secret.html"):
        response = client.get(url, follow_redirects=True)
        assert response.status_code == 404 and b"secret" not in response.data, url
