"""Lab workload for the criu engine: counts ten times a second, in memory only, and tells the count
to whoever connects to 127.0.0.1:PORT. A restart would start again from 0; a migration must not."""
import select
import socket
import sys

port = int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(16)
count = 0
while True:
    readable = select.select([server], [], [], 0.1)[0]
    if readable:
        conn = server.accept()[0]
        conn.sendall(b"%d\n" % count)
        conn.close()
    else:
        count += 1
