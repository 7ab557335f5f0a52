"""The public storefront: products and their images, or a maintenance page during a restore."""
from app.storefront.routes import bp

__all__ = ["bp"]
