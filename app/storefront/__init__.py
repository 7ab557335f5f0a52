"""The public storefront: products and their images, or a maintenance page during a restore."""
from flask import Blueprint

bp = Blueprint("storefront", __name__)

from app.storefront import routes  # noqa: E402,F401
