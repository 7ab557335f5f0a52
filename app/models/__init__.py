"""Models: the store's (backed up and restored) and the platform's (never restored)."""
from app.extensions import db
from app.models.platform import (
    ArchiveCopy,
    ArchivePin,
    ArchiveTrial,
    AuditEvent,
    BackupSchedule,
    Destination,
    JobRun,
    MaintainerNetwork,
    PlatformOperator,
    RetentionSetting,
    StoreStatus,
)
from app.models.store import (
    ROLES,
    Cart,
    CartLine,
    Order,
    OrderLine,
    Product,
    ProductImage,
    Setting,
    User,
)


def store_metadata():
    """The metadata holding exactly the store tables: what a backup captures."""
    return db.metadatas[None]


__all__ = [
    "ROLES", "User", "Product", "ProductImage", "Order", "OrderLine", "Cart", "CartLine", "Setting",
    "MaintainerNetwork", "PlatformOperator", "AuditEvent", "JobRun", "StoreStatus", "BackupSchedule",
    "RetentionSetting", "ArchivePin", "Destination", "ArchiveCopy", "ArchiveTrial", "store_metadata",
]
