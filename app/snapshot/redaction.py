"""What an export leaves out: it is meant to leave the maintainer network, so it carries no secrets."""
from app.snapshot.database import Redaction

REDACTED = "!redacted"

STORE_REDACTIONS = (
    Redaction("users", "password_hash", REDACTED),
    Redaction("users", "session_token", REDACTED),
    Redaction("carts", "token", REDACTED),
    Redaction("settings", "value", REDACTED, when_true="is_secret"),
)
