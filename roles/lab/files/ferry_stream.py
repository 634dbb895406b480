"""Lab workload for connections that must survive a migration.

serve ADDR PORT: accept clients on ADDR:PORT and send each an endless stream of lines "1", "2", ...
(about a thousand a second). client ADDR PORT SECONDS: hold one connection for SECONDS, and print as
JSON what arrived: lines, the first and last number, and every gap or repeat (none may be)."""
import json
import select
import socket
import sys
import time


def serve(address, port):
    server = socket.create_server((address, port))
    clients = {}
    while True:
        readable, writable, _errors = select.select([server] + list(clients), list(clients), [], 0.001)
        if server in readable:
            conn, _addr = server.accept()
            conn.setblocking(False)
            clients[conn] = 0
        for conn in readable:
            if conn is not server and conn in clients:
                try:
                    if not conn.recv(4096):
                        del clients[conn]
                except OSError:
                    del clients[conn]
        for conn in writable:
            if conn in clients:
                try:
                    conn.send(b"%d\n" % (clients[conn] + 1))  # lines are short: sent whole or not at all
                    clients[conn] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    del clients[conn]
        time.sleep(0.001)


def client(address, port, seconds):
    sock = socket.create_connection((address, port), timeout=30)
    end, buffer, expected, first, faults, lines = time.time() + seconds, b"", None, None, [], 0
    while time.time() < end:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            faults.append("no data for 30 s")
            break
        if not data:
            faults.append("the connection was closed")
            break
        buffer += data
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            number = int(line)
            first = number if first is None else first
            if expected is not None and number != expected:
                faults.append("expected %s, got %s" % (expected, number))
            expected = number + 1
            lines += 1
    local_address, local_port = sock.getsockname()[:2]
    print(json.dumps({"lines": lines, "first": first, "last": expected - 1 if expected else None,
                      "faults": faults[:10], "local": "%s:%s" % (local_address, local_port)}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
