"""Lab workload for connections that must survive a migration.

serve ADDR PORT: accept clients on ADDR:PORT and send each an endless stream of lines "1", "2", ...
(about a thousand a second), reading and dropping what they send. client ADDR PORT: hold one connection
until standard input ends, writing a byte every 20 ms as a busy client does (a server's host that answers
one of them before the server's socket is back resets the connection), and print as JSON what arrived:
lines, the first and last number, every gap or repeat (none may be), and how long the stream had been
silent when it stopped (the caller ends it after the event it watches, so a stream that never came back
shows, whatever the event's duration). The client says "streaming"
on standard error once the first line has arrived, so the caller starts its event on a live stream."""
import json
import os
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


def client(address, port):
    sock = socket.create_connection((address, port))
    buffer, expected, first, faults, lines = b"", None, None, [], 0
    last_data = last_sent = time.monotonic()
    while True:
        readable, _w, _e = select.select([sock, sys.stdin], [], [], 0.02)
        if time.monotonic() - last_data > 30:
            faults.append("no data for 30 s")
            break
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
            break
        try:
            if time.monotonic() - last_sent >= 0.02:
                sock.send(b".", socket.MSG_DONTWAIT)
                last_sent = time.monotonic()
            data = sock.recv(65536) if sock in readable else None
        except BlockingIOError:
            continue  # the server is frozen and the send buffer full: nothing lost, it is sent later
        except OSError as exc:
            faults.append("the connection broke: %s" % exc)
            break
        if data is None:
            continue
        if not data:
            faults.append("the connection was closed")
            break
        last_data = time.monotonic()
        buffer += data
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            number = int(line)
            if first is None:
                first = number
                sys.stderr.write("streaming\n")
                sys.stderr.flush()
            if expected is not None and number != expected:
                faults.append("expected %s, got %s" % (expected, number))
            expected = number + 1
            lines += 1
    local_address, local_port = sock.getsockname()[:2]
    print(json.dumps({"lines": lines, "first": first, "last": expected - 1 if expected else None,
                      "faults": faults[:10], "silent": round(time.monotonic() - last_data, 3),
                      "local": "%s:%s" % (local_address, local_port)}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]))
