"""The tests' S3 server is the demo's: SeaweedFS `weed mini` (jobs/s3server.py)."""
from jobs.s3server import ACCESS_KEY, SECRET_KEY, SeaweedServer

__all__ = ["SeaweedServer", "ACCESS_KEY", "SECRET_KEY"]
