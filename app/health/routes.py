"""GET /health/backups: the store's backup health as JSON, 200 when green or amber, 503 when red.
The gate (a bearer token, HEALTH_TOKEN) runs before this; there is no session here."""
from flask import Blueprint, jsonify

from app.operations.health import store_health

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("/backups")
def backups():
    health = store_health()
    response = jsonify(health.as_dict())
    response.status_code = 503 if health.level == "red" else 200
    response.headers["Cache-Control"] = "no-store"
    return response
