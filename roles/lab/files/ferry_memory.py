"""Lab workload for post-copy, streamed memory and pre-copy: holds MIB MiB of pseudo-random bytes and a
counter it keeps incrementing. With DIRTY (MiB/s), it also keeps rewriting those bytes at that rate,
one 4 KiB page at a time: write w fills page w mod (MIB * 256) with w, 8 bytes little-endian, over and
over, so the bytes after any number of writes are known (expected_digest). It tells whoever connects
to 127.0.0.1:PORT the count, and to 127.0.0.1:PORT+1 "<count> <sha256 of the bytes> <writes>". A
migration must keep counting and must bring every page back exactly, the ones just written too.

    ferry_memory.py PORT MIB [DIRTY]
"""
import hashlib
import random
import select
import socket
import sys
import time

PAGE = 4096


def initial(mib):
    data = bytearray(mib << 20)
    for i in range(mib):  # randbytes takes at most 256 MiB at a time
        data[i << 20:(i + 1) << 20] = random.Random(i).randbytes(1 << 20)
    return data


def write_page(data, write):
    offset = write % (len(data) // PAGE) * PAGE
    data[offset:offset + PAGE] = write.to_bytes(8, "little") * (PAGE // 8)


def expected_digest(mib, writes):
    """The SHA-256 of the bytes after ``writes`` writes: each page holds the last write that hit it."""
    data, pages = initial(mib), mib << 8
    for page in range(min(writes, pages)):
        write_page(data, page + (writes - 1 - page) // pages * pages)
    return hashlib.sha256(data).hexdigest()


def main(port, mib, dirty=0.0):
    data = initial(mib)
    servers = []
    for offset in (0, 1):
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port + offset))
        server.listen(16)
        servers.append(server)
    count, writes, budget, last = 0, 0, 0.0, time.monotonic()
    while True:
        ready = select.select(servers, [], [], 0.01)[0]
        for server in ready:
            conn = server.accept()[0]
            if server is servers[0]:
                conn.sendall(b"%d\n" % count)
            else:
                conn.sendall(b"%d %s %d\n" % (count, hashlib.sha256(data).hexdigest().encode(), writes))
            conn.close()
        if not ready:
            count += 1
        if dirty:
            # Elapsed time between two turns, at most 0.1 s: a restored process's clock may jump.
            now = time.monotonic()
            budget += dirty * 256 * min(max(now - last, 0.0), 0.1)
            last = now
            while budget >= 1:
                write_page(data, writes)
                writes += 1
                budget -= 1


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
