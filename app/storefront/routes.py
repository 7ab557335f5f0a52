"""Storefront pages."""
from flask import current_app, render_template, send_from_directory

from app.extensions import db
from app.maintenance import in_maintenance
from app.models import Product
from app.storefront import bp

RETRY_AFTER_SECONDS = 120


@bp.before_request
def maintenance_page():
    if in_maintenance():
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


@bp.get("/uploads/<path:name>")
def upload(name):
    # Product media is public on a storefront; send_from_directory refuses paths outside the folder.
    return send_from_directory(current_app.config["UPLOADS_DIR"], name, max_age=300)
