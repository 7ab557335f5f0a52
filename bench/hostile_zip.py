"""ZIPs with huge central directories, built in about a second: how fast, and in how much memory, they are refused.

    PYTHONPATH=. .venv/bin/python -m bench.hostile_zip [--entries 1000000 10000000] [--zipfile] [--keep DIR]

Each archive is one zero-length local header followed by N central-directory records that all point at it,
then the ZIP64 end records: no manifest, no signature. Each refusal runs in a fresh child process, which
reports its own seconds and the growth of its peak RSS (VmHWM) over the refusal. --zipfile also times what
Python's zipfile needs just to open the smaller archive (what the engine did before it read the end records
itself); it is slow and large by design.
"""
import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR = struct.Struct("<4sLQL")
_EOCD = struct.Struct("<4s4H2LH")
BLOCK_RECORDS = 200_000


def write_many_entries(path, count, name=b"files/x"):
    """A ZIP64 file whose central directory holds ``count`` records of one empty member ``name``."""
    local = _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, zlib.crc32(b""), 0, 0, len(name), 0) + name
    record = _CENTRAL.pack(b"PK\x01\x02", 45, 3, 20, 0, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0, 0, 0, 0,
                           0o100600 << 16, 0) + name
    with open(path, "wb") as out:
        out.write(local)
        cd_offset = len(local)
        left = count
        while left:
            n = min(left, BLOCK_RECORDS)
            out.write(record * n)
            left -= n
        cd_size = count * len(record)
        eocd64_offset = cd_offset + cd_size
        out.write(_EOCD64.pack(b"PK\x06\x06", _EOCD64.size - 12, 45, 45, 0, 0, count, count, cd_size, cd_offset))
        out.write(_LOCATOR.pack(b"PK\x06\x07", 0, eocd64_offset, 1))
        out.write(_EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return path


CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import sqlalchemy as sa
from app.snapshot import SnapshotError, inspect_archive

def peak_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))

mode = {mode!r}
before = peak_kib()
start = time.perf_counter()
message = None
if mode == "zipfile":
    import zipfile
    with zipfile.ZipFile({path!r}) as z:
        message = f"zipfile opened it: {{len(z.infolist())}} entries"
else:
    try:
        inspect_archive({path!r}, signing_key="bench-key", schema_revision="bench", metadata=sa.MetaData())
    except SnapshotError as error:
        message = f"{{type(error).__name__}}: {{error}}"
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_delta_mb": (peak_kib() - before) / 1024, "message": message}}))
"""


def measure(path, mode="engine"):
    code = CHILD.format(root=str(ROOT), path=str(path), mode=mode)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--zipfile", action="store_true", help="also time zipfile.ZipFile on the smallest archive")
    parser.add_argument("--keep", type=Path, help="write the archives here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for count in args.entries:
            path = folder / f"hostile-{count}-entries.zip"
            start = time.perf_counter()
            write_many_entries(path, count)
            built = time.perf_counter() - start
            result = measure(path)
            print(f"{count:>11,} entries ({path.stat().st_size / 1e6:,.0f} MB, built in {built:.1f} s): refused in "
                  f"{result['seconds'] * 1000:.1f} ms, peak RSS +{result['peak_delta_mb']:.1f} MB\n"
                  f"{'':13}{result['message']}")
        if args.zipfile:
            count = min(args.entries)
            result = measure(folder / f"hostile-{count}-entries.zip", "zipfile")
            print(f"{count:>11,} entries, zipfile.ZipFile alone: {result['seconds']:.1f} s, peak RSS "
                  f"+{result['peak_delta_mb']:.0f} MB ({result['message']})")


if __name__ == "__main__":
    main()
