"""SHA-256 against BLAKE3 (and CRC-32, which the ZIP format needs anyway) over the same bytes in memory.

Prints seconds and GB/s per hash, median of ``--rounds``; the ``blake3`` package is not a dependency of the app
(`pip install blake3` into any venv to run this). Issue 15 asked whether a faster cryptographic hash is worth an
archive format version bump:

    python -m bench.hash_bench --mb 2048 --block-kib 1024
"""
import argparse
import hashlib
import os
import statistics
import time
import zlib


def timed(fn, blocks):
    start = time.perf_counter()
    fn(blocks)
    return time.perf_counter() - start


def sha256(blocks):
    h = hashlib.sha256()
    for b in blocks:
        h.update(b)
    return h.hexdigest()


def crc32(blocks):
    c = 0
    for b in blocks:
        c = zlib.crc32(b, c)
    return c


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--block-kib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    block = os.urandom(args.block_kib * 1024)
    blocks = [block] * (args.mb * 1024 // args.block_kib)  # the same block again: hashing cost, not memory
    hashes = {"sha256": sha256, "crc32": crc32}
    try:
        import blake3

        def b3(blocks, threads=1):
            h = blake3.blake3(max_threads=threads)
            for b in blocks:
                h.update(b)
            return h.hexdigest()

        hashes["blake3 (1 thread)"] = b3
        hashes["blake3 (all cores)"] = lambda blocks: b3(blocks, blake3.blake3.AUTO)
    except ImportError:
        print("blake3 is not installed here: only SHA-256 and CRC-32 are measured")
    gb = args.mb / 1024
    print(f"{args.mb} MB in blocks of {args.block_kib} KiB, {os.cpu_count()} CPUs, median of {args.rounds}")
    for name, fn in hashes.items():
        seconds = statistics.median(timed(fn, blocks) for _ in range(args.rounds))
        print(f"{name:20} {seconds:7.2f} s  {gb / seconds:6.2f} GB/s")


if __name__ == "__main__":
    main()
