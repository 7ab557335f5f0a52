"""Storefront pages."""
from pathlib import PurePosixPath

from flask import Blueprint, abort, current_app, render_template, send_from_directory

from app.extensions import db
from app.maintenance import in_maintenance
from app.models import Product

RETRY_AFTER_SECONDS = 120

# Uploaded and restored files are store content, never the app's active content. Only these
# types, decided by the file's extension through this table (never by guessing), are shown
# inline; everything else (HTML, SVG, scripts, no extension, ...) is an opaque download.
INLINE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".pdf": "application/pdf",
}
DOWNLOAD_TYPE = "application/octet-stream"

bp = Blueprint("storefront", __name__)


@bp.before_request
def maintenance_page():
    # A staging copy (app.operations.staging) is not the live store: the live store's maintenance is not its own.
    if in_maintenance() and not current_app.config.get("STAGING_FROM"):
        response = current_app.make_response((render_template("storefront/maintenance.html"), 503))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return None


@bp.get("/")
def index():
    products = db.session.scalars(
        db.select(Product).where(Product.active.is_(True)).order_by(Product.id)
    ).all()
    return render_template("storefront/index.html", products=products)


@bp.get("/products/<slug>")
def product(slug):
    item = db.session.scalar(db.select(Product).where(Product.slug == slug, Product.active.is_(True)))
    if item is None:
        abort(404)
    return render_template("storefront/product.html", product=item)


@bp.get("/uploads/<path:name>")
def upload(name):
    # Product media is public on a storefront; send_from_directory refuses paths outside the folder.
    inline_type = INLINE_TYPES.get(PurePosixPath(name).suffix.lower())
    response = send_from_directory(
        current_app.config["UPLOADS_DIR"], name, max_age=300,
        mimetype=inline_type or DOWNLOAD_TYPE, as_attachment=inline_type is None,
    )
    # Set here, so the app-wide after_request hook (setdefault) leaves them as they are.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    return response
