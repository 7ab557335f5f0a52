"""The platform team's area: its own login and the maintainer network list."""
from app.platform.routes import PUBLIC_ENDPOINTS, bp

__all__ = ["bp", "PUBLIC_ENDPOINTS"]
