"""Machine-readable health for monitoring systems: token-protected, no session."""
from app.health.routes import bp

__all__ = ["bp"]
