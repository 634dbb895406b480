"""Lab workload for post-copy and streamed memory: holds MIB MiB of pseudo-random bytes it never changes
and a counter it keeps incrementing. It tells whoever connects to 127.0.0.1:PORT the count, and to
127.0.0.1:PORT+1 "<count> <sha256 of the bytes>". A migration must keep counting and must bring every
page back exactly."""
import hashlib
import random
import select
import socket
import sys

port, mib = int(sys.argv[1]), int(sys.argv[2])
data = bytearray(mib << 20)
for i in range(mib):  # randbytes takes at most 256 MiB at a time
    data[i << 20:(i + 1) << 20] = random.Random(i).randbytes(1 << 20)
servers = []
for offset in (0, 1):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port + offset))
    server.listen(16)
    servers.append(server)
count = 0
while True:
    ready = select.select(servers, [], [], 0.01)[0]
    for server in ready:
        conn = server.accept()[0]
        if server is servers[0]:
            conn.sendall(b"%d\n" % count)
        else:
            conn.sendall(b"%d %s\n" % (count, hashlib.sha256(data).hexdigest().encode()))
        conn.close()
    if not ready:
        count += 1
