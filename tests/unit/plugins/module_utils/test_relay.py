"""The page link between two relays over real loopback sockets, with a proxy that breaks the link."""
import os
import socket
import struct
import threading
import time

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _relay


def dial_tcp(port):
    """A dialler as the relay wants it: a new connection within the seconds given (SSH in use)."""
    return lambda timeout: socket.create_connection(("127.0.0.1", port), timeout=min(timeout, 2))


class CuttingProxy:
    """Forwards one TCP link; cuts it (both sides) after ``cut_after`` bytes, ``cuts`` times, and refuses
    new connections for ``down`` seconds after each cut."""

    def __init__(self, upstream, cut_after=None, cuts=1, down=0.3, dead=False):
        self.upstream, self.cut_after, self.cuts, self.down, self.dead = upstream, cut_after, cuts, down, dead
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _addr = self.listener.accept()
            except OSError:
                return
            if self.dead:
                client.close()
                continue
            self.connections += 1
            server = socket.create_connection(self.upstream)
            state = {"bytes": 0, "cut": False}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b, state), daemon=True).start()

    def _pump(self, src, dst, state):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                state["bytes"] += len(data)
                if self.cut_after is not None and self.cuts and state["bytes"] > self.cut_after and not state["cut"]:
                    state["cut"] = True
                    self.cuts -= 1
                    self.dead = True
                    threading.Timer(self.down, lambda: setattr(self, "dead", False)).start()
                    break
        except OSError:
            pass
        for sock in (src, dst):
            _relay._abort(sock)


def pair():
    """A connected loopback TCP pair: resets exist on TCP only."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _addr = listener.accept()
    return a, b


def start_link(proxy_for=None, give_up=5.0, must_close=False, failures=None, **proxy):
    """Source relay dials (through a proxy) the target relay; returns the far ends of both local sockets.
    Each link has its own name, as in use: a relay left over from an earlier test, redialling a port
    number that is now this test's, fails the hello instead of joining this link."""
    link_id = os.urandom(8).hex()
    src_criu, src_local = pair()
    tgt_criu, tgt_local = pair()
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = CuttingProxy(("127.0.0.1", listener.getsockname()[1]), **proxy)
    target = _relay.Relay(link_id, tgt_local, listener=listener, give_up=give_up,
                          lazy_client="local" if must_close else None,
                          on_failure=(lambda: failures.append("target")) if failures is not None else None)
    source = _relay.Relay(link_id, src_local, dial=dial_tcp(proxy.port), give_up=give_up,
                          lazy_client="peer" if must_close else None,
                          on_failure=(lambda: failures.append("source")) if failures is not None else None)
    return source.start(), target.start(), src_criu, tgt_criu, proxy


def read_all(sock):
    data = bytearray()
    while True:
        block = sock.recv(1 << 20)
        if not block:
            return bytes(data)
        data += block


def test_bytes_cross_intact_both_ways_through_a_broken_link():
    source, target, src_criu, tgt_criu, proxy = start_link(cut_after=3 << 20)
    payload = os.urandom(12 << 20)
    got = {}
    reader = threading.Thread(target=lambda: got.setdefault("t", read_all(tgt_criu)))
    reader.start()
    src_criu.sendall(payload)
    src_criu.shutdown(socket.SHUT_WR)
    reader.join(30)
    assert got["t"] == payload
    tgt_criu.sendall(b"answer")
    tgt_criu.shutdown(socket.SHUT_WR)
    assert read_all(src_criu) == b"answer"
    assert source.wait(10) and target.wait(10), (source.error, target.error)
    assert proxy.connections >= 2 and source.reconnects + target.reconnects >= 1


def test_a_slow_reader_on_one_side_is_flow_control_not_a_break(monkeypatch):
    """The target's CRIU writing pages to a slow disk stops reading for longer than the silence limit;
    the source's sends wait, the link stays, nothing is resent."""
    # Well above the heartbeat period, or a late heartbeat looks like silence: at 2.0 a loaded CI
    # machine (2 cores, 96 MiB hashed on each side) saw a gap that long between frames.
    monkeypatch.setattr(_relay, "SILENCE", 3.0)
    source, target, src_criu, tgt_criu, proxy = start_link()
    payload = os.urandom(96 << 20)
    sender = threading.Thread(target=lambda: (src_criu.sendall(payload), src_criu.shutdown(socket.SHUT_WR)))
    sender.start()
    time.sleep(7)  # the target's CRIU reads nothing for over two silence limits
    got = read_all(tgt_criu)
    sender.join(30)
    assert got == payload
    tgt_criu.shutdown(socket.SHUT_WR)
    assert read_all(src_criu) == b""
    assert source.wait(10) and target.wait(10), (source.error, target.error)
    assert proxy.connections == 1 and source.reconnects == target.reconnects == 0


def iov(cmd):
    return struct.pack("<IxxxxQQQ", cmd, 0, 0, 0)


def test_lazy_client_that_stops_without_close_makes_the_source_abort():
    failures = []
    source, target, src_criu, tgt_criu, _proxy = start_link(must_close=True, failures=failures)
    tgt_criu.sendall(iov(7))  # a GET, then the client goes away without CLOSE
    tgt_criu.close()
    assert src_criu.recv(64) == iov(7)
    with pytest.raises(ConnectionResetError):
        while src_criu.recv(64):
            pass
    assert not source.wait(10) and not target.wait(10)
    assert "stopped before every page" in target.error  # the target fails first and tells the source
    assert "stopped before every page" in source.error
    assert sorted(failures) == ["source", "target"]


def test_lazy_client_that_closes_ends_cleanly():
    source, target, src_criu, tgt_criu, _proxy = start_link(must_close=True)
    tgt_criu.sendall(iov(7) + iov(_relay.PS_IOV_CLOSE))
    tgt_criu.shutdown(socket.SHUT_WR)
    assert read_all(src_criu) == iov(7) + iov(_relay.PS_IOV_CLOSE)  # a clean end of stream
    src_criu.shutdown(socket.SHUT_WR)
    assert source.wait(10) and target.wait(10), (source.error, target.error)


def test_a_link_that_stays_down_gives_up_with_a_reset_on_both_ends():
    failures = []
    source, target, src_criu, tgt_criu, proxy = start_link(give_up=1.5, failures=failures, cut_after=1000, down=60)
    # The break must come after the first hello: a target still waiting for its first link waits 60 s.
    while target._net is None:  # pylint: disable=protected-access
        time.sleep(0.01)
    src_criu.sendall(os.urandom(1 << 20))
    started = time.monotonic()
    assert not source.wait(20)
    assert not target.wait(20)
    assert time.monotonic() - started < 15
    assert "stayed down" in source.error and "stayed down" in target.error
    assert sorted(failures) == ["source", "target"]
    for sock in (src_criu, tgt_criu):
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while sock.recv(1 << 20):
                pass
    assert proxy.connections == 1


def test_another_links_end_is_refused(monkeypatch):
    """A relay of another checkpoint reaching this link's end is turned away at the hello; nothing is delivered."""
    monkeypatch.setattr(_relay, "FIRST_LINK", 1.0)
    listener = socket.create_server(("127.0.0.1", 0))
    tgt_criu, tgt_local = pair()
    target = _relay.Relay("c1", tgt_local, listener=listener, give_up=2).start()
    stranger = _relay.Relay("c2", socket.socketpair()[0], dial=dial_tcp(listener.getsockname()[1]), give_up=1.5).start()
    assert not stranger.wait(10) and "not this link's" in stranger.error
    assert target._net is None and target.bytes_in == 0  # pylint: disable=protected-access
    target.close()


def test_a_frame_out_of_bounds_is_refused():
    a, b = socket.socketpair()
    a.sendall(struct.pack(">IBQ", 1 << 30, _relay.DATA, 0))
    with pytest.raises(_relay.RelayError, match="out of bounds"):
        _relay.Relay._read_frame(b)  # pylint: disable=protected-access


def test_a_criu_that_comes_after_the_link_failed_gets_a_reset(monkeypatch):
    """A lazy dump reaches its page server only after the link gave up: it must hear so, not wait forever."""
    monkeypatch.setattr(_relay, "FIRST_LINK", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as refusing:
        port = refusing.getsockname()[1]
    arrived = threading.Event()
    criu_server = socket.create_server(("127.0.0.1", 0))

    def connect():
        arrived.wait(30)
        return socket.create_connection(criu_server.getsockname())
    relay = _relay.Relay("c1", connect, dial=dial_tcp(port), give_up=0.5, lazy_client="peer").start()
    deadline = time.monotonic() + 20
    while relay.error is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "stayed down" in relay.error
    arrived.set()  # CRIU serves its pages now
    criu_server.settimeout(10)
    conn, _addr = criu_server.accept()
    conn.settimeout(10)
    with pytest.raises(ConnectionResetError):
        while conn.recv(1):
            pass


def test_closed_by_client():
    assert _relay.closed_by_client(iov(7) + iov(_relay.PS_IOV_CLOSE))
    assert _relay.closed_by_client(iov(_relay.PS_IOV_FORCE_CLOSE))
    assert not _relay.closed_by_client(iov(_relay.PS_IOV_CLOSE) + iov(7))
    assert not _relay.closed_by_client(iov(_relay.PS_IOV_CLOSE)[:-1])
    assert not _relay.closed_by_client(b"")


def test_a_relay_given_up_on_resets_criu_even_while_it_reads_from_it():
    # A plain close leaves a socket open while another thread is blocked reading it: CRIU would wait forever.
    with socket.create_server(("127.0.0.1", 0)) as refusing:
        port = refusing.getsockname()[1]
    src_criu, src_local = pair()
    relay = _relay.Relay("c1", src_local, dial=dial_tcp(port)).start()
    time.sleep(0.3)  # its pump thread now waits for CRIU's data
    assert not relay.wait(0.1) and "did not finish" in relay.error
    src_criu.settimeout(5)
    with pytest.raises(ConnectionResetError):
        src_criu.recv(1)


def test_a_session_closed_by_another_thread_reads_as_a_break():
    # The heartbeat that finds a session broken closes it; the keeper, about to read it, must see a
    # break (and dial again), not select's ValueError on a closed socket, which ended its thread.
    a, b = pair()
    a.close()
    with pytest.raises(ConnectionError):
        _relay._read_exact(a, 4, 1.0)
    b.close()


def test_a_keeper_that_fails_unexpectedly_fails_the_link_instead_of_leaving_it_hanging(monkeypatch):
    def boom(self, sock):
        raise RuntimeError("boom")
    monkeypatch.setattr(_relay.Relay, "_read_link", boom)
    source, target, src_criu, tgt_criu, _proxy = start_link(give_up=30)
    assert not source.wait(10) and "boom" in source.error
    target.close()
    for sock in (src_criu, tgt_criu):
        sock.close()


def test_a_relay_sends_to_its_criu_without_waiting_to_gather_small_writes():
    """CRIU's lazy-pages daemon asks for pages one small request at a time: Nagle's algorithm would hold
    each back until the previous segment is acknowledged, so the relay turns it off on a TCP connection."""
    server = socket.create_server(("127.0.0.1", 0))
    local = socket.create_connection(server.getsockname())
    relay = _relay.Relay("c1", lambda: local, dial=dial_tcp(1))
    try:
        assert relay._local_sock().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # pylint: disable=protected-access
    finally:
        local.close()
        server.close()
