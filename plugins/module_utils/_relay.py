# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The page link: CRIU's page-server connection carried between two hosts, through OpenSSH, resumable.

CRIU's page server speaks plain, unauthenticated TCP, and treats a connection that simply ends as a
finished transfer. Ferry never lets CRIU talk across the network: each CRIU talks to a relay on its own
host, and the two relays talk through an OpenSSH session, the source's dialled with the migration's
one-time key, whose forced command can do nothing but join this checkpoint's link on the target
(``_wire.py``). Encryption, integrity and host-key pinning are OpenSSH's.

What neither CRIU nor SSH gives, the relays add: a broken session is dialled again and both ends resend
what the other has not acknowledged, so CRIU never sees the break. Only when the link stays down past
``give_up`` seconds, or either end fails, does a relay abort its CRIU connection (a reset, never a
clean end), tell the other end, and call ``on_failure``.

Frame: <4-byte payload length><1-byte kind><8-byte index><payload>. A DATA or EOF frame's index is its
place in its direction, so a frame resent after a break is recognised and delivered once.
"""

from __future__ import annotations

import collections
import select
import socket
import struct
import threading
import time
import typing as t

DATA, EOF, ACK, HELLO, ABORT = 1, 2, 3, 4, 5
CHUNK = 256 << 10
ACK_EVERY = 16
WINDOW = 64 << 20  # unacknowledged bytes a sender keeps for resending before it waits
HEARTBEAT = 1.0
# A link that says nothing for this long is broken, even if TCP has not noticed. Only silence counts:
# a send that waits because the other host's CRIU drains slowly (a disk) is flow control, not a break.
SILENCE = 5.0
FIRST_LINK = 60.0  # seconds the first session may take: the other end may still be starting
_HEAD = struct.Struct(">IBQ")  # payload length, kind, index
_IDX = struct.Struct(">Q")
# CRIU's page_server_iov (page-xfer.c): u32 cmd, u64 nr_pages, u64 vaddr, u64 dst_id, 32 bytes aligned.
PS_IOV_SIZE = 32
PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE = 0x1023, 0x1024


class RelayError(Exception):
    pass


def closed_by_client(stream: bytes) -> bool:
    """True when the last request a lazy-pages client sent is CLOSE: the pages were all served.

    The lazy-pages client sends only fixed-size requests; anything else ending its stream means it
    stopped early, and the source must not take that for the end of the transfer.
    """
    if len(stream) < PS_IOV_SIZE or len(stream) % PS_IOV_SIZE:
        return False
    cmd = struct.unpack_from("<I", stream, len(stream) - PS_IOV_SIZE)[0] & 0xFFFF
    return cmd in (PS_IOV_CLOSE & 0xFFFF, PS_IOV_FORCE_CLOSE & 0xFFFF)


class _Tail:
    """The last few bytes of a stream, for closed_by_client."""

    def __init__(self):
        self.total = 0
        self.tail = b""

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.tail = (self.tail + data)[-PS_IOV_SIZE:]

    def ended_with_close(self) -> bool:
        if self.total < PS_IOV_SIZE or self.total % PS_IOV_SIZE:
            return False
        return closed_by_client(self.tail)


def _shut(sock: socket.socket, how: int) -> None:
    """Shut down (which wakes a thread blocked on it; close alone would not) and close, quietly."""
    try:
        sock.shutdown(how)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _abort(sock: socket.socket | None) -> None:
    """Close with a reset: the peer sees an error, never a clean end of stream."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _shut(sock, socket.SHUT_RD)  # SHUT_RD sends no FIN; the last close then resets


def _read_exact(sock: socket.socket, size: int, silence: float | None = None) -> bytearray:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        if sock.fileno() < 0:  # closed by another thread that found the session broken
            raise ConnectionError("link closed")
        if silence is not None and not select.select([sock], [], [], silence)[0]:
            raise ConnectionError("the link has been silent for %.0f s" % silence)
        count = sock.recv_into(view[got:])
        if not count:
            raise ConnectionError("link closed")
        got += count
    return data


class Relay:
    """One end of a page link.

    ``link_id`` names the link (the checkpoint ID): a hello for another link is refused. ``dial`` is a
    callable that opens a new session to the other end within the seconds it is given and returns its
    socket; without it, the relay accepts sessions on ``listener``. ``local`` is a connected socket to
    this host's CRIU, or a callable returning one once it is needed.
    ``lazy_client``: which end's CRIU is a lazy-pages client ("local" or "peer"), whose stream counts as
    finished only when its last request was CLOSE; any other end of it fails the link, and the source's
    CRIU never takes it for a finished transfer, nor does a target keep running without its pages.
    """

    def __init__(self, link_id: str, local: t.Any, dial: t.Callable[[float], socket.socket] | None = None,
                 listener: socket.socket | None = None, give_up: float = 30.0,
                 on_failure: t.Callable[[], None] | None = None, lazy_client: str | None = None):
        if (dial is None) == (listener is None):
            raise RelayError("a relay either dials or listens")
        self._link_id = link_id.encode("utf-8")
        self._local_arg = local
        self._local: socket.socket | None = None
        self._dial, self._listener = dial, listener
        self.give_up = give_up
        self._on_failure = on_failure
        self._send_lock = threading.Lock()
        self._local_lock = threading.Lock()
        self._making_lock = threading.Lock()
        self._made = False
        self._lazy_client = lazy_client
        self._local_tail = _Tail()
        self._lock = threading.Condition()
        self._net: socket.socket | None = None
        self._unacked: collections.deque[tuple[int, bytes]] = collections.deque()
        self._unacked_bytes = 0
        self._out_index = 0
        self._in_next = 0
        self._since_ack = 0
        self._peer_tail = _Tail()
        self._sent_eof = False
        self._peer_eof = False
        self._eof_acked = False
        self.error: str | None = None
        self._abort_note: bytes | None = None
        self.done = threading.Event()
        self._last_attempt = ""
        self.reconnects = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- frames --------------------------------------------------------------------------------

    @staticmethod
    def _frame(kind: int, index: int, payload: bytes) -> bytes:
        return _HEAD.pack(len(payload), kind, index) + payload

    def _send_ctl(self, kind: int, payload: bytes) -> None:
        self._send(self._frame(kind, 0, payload))

    @staticmethod
    def _read_frame(sock: socket.socket, silence: float | None = None) -> tuple[int, int, bytes]:
        length, kind, index = _HEAD.unpack(_read_exact(sock, _HEAD.size, silence))
        if length > CHUNK + 1024:
            raise RelayError("frame of %d bytes is out of bounds" % length)
        return kind, index, _read_exact(sock, length, silence) if length else b""

    def _send(self, frame: bytes) -> None:
        """Send on the current link; a break is left to the link keeper, who resends."""
        sock = self._net
        if sock is None:
            return
        try:
            with self._send_lock:
                sock.sendall(frame)
        except OSError:
            self._broken(sock)

    # ---- link ----------------------------------------------------------------------------------

    def _broken(self, sock: socket.socket) -> None:
        with self._lock:
            if self._net is sock:
                self._net = None
                self._lock.notify_all()
        _shut(sock, socket.SHUT_RDWR)  # wakes a send blocked on it in another thread

    def _connect(self, deadline: float) -> socket.socket | None:
        while time.monotonic() < deadline and not self.done.is_set():
            sock = None
            try:
                if self._dial:
                    sock = self._dial(max(1.0, deadline - time.monotonic()))
                else:
                    self._listener.settimeout(max(0.1, min(1.0, deadline - time.monotonic())))
                    sock, _addr = self._listener.accept()
                sock.settimeout(max(1.0, deadline - time.monotonic()))
                # Both ends say which link and how far they got; each then resends the rest of its frames.
                with self._send_lock:
                    sock.sendall(self._frame(HELLO, self._in_next, self._link_id))
                kind, their_next, payload = self._read_frame(sock)
                if kind != HELLO or payload != self._link_id:
                    raise RelayError("the other end is not this link's")
                sock.settimeout(None)  # silence is watched by the reader, sends may wait (flow control)
                with self._lock, self._send_lock:
                    self._drop_acked(their_next)
                    for _index, frame in self._unacked:
                        sock.sendall(frame)
                    self._net = sock
                    self._lock.notify_all()
                    if self._abort_note is not None:  # failed while the link was down: say so now
                        sock.sendall(self._frame(ABORT, 0, self._abort_note))
                return sock
            except (OSError, RelayError) as exc:
                self._last_attempt = str(exc)
                if sock is not None:
                    _shut(sock, socket.SHUT_RDWR)
                time.sleep(0.1)
        return None

    def _drop_acked(self, their_next: int) -> None:
        while self._unacked and self._unacked[0][0] < their_next:
            _index, frame = self._unacked.popleft()
            self._unacked_bytes -= len(frame)
        self._lock.notify_all()

    def _keeper(self) -> None:
        try:
            self._keep()
        except Exception as exc:  # pylint: disable=broad-except
            # Without its keeper the link would never end, and both CRIUs would wait for it forever.
            self._fail("the page link failed: %r" % exc)

    def _keep(self) -> None:
        """Keeps the link up and reads it; gives up after ``give_up`` seconds without one."""
        first = True
        while not self.done.is_set():
            deadline = time.monotonic() + (self.give_up if not first else max(self.give_up, FIRST_LINK))
            sock = self._connect(deadline)
            if sock is None:
                if not self.done.is_set():
                    self._fail("the page link stayed down for %.0f s%s" % (
                        self.give_up, " (last attempt: %s)" % self._last_attempt if self._last_attempt else ""))
                return
            if not first:
                self.reconnects += 1
            first = False
            try:
                self._read_link(sock)
            except (OSError, ValueError, RelayError) as exc:  # ValueError: select on a socket just closed
                if isinstance(exc, RelayError):
                    self.error = str(exc)
                self._broken(sock)

    def _read_link(self, sock: socket.socket) -> None:
        while not self.done.is_set():
            kind, counter, payload = self._read_frame(sock, SILENCE)
            if kind == ACK:
                with self._lock:
                    self._drop_acked(_IDX.unpack(payload)[0])
                    if self._sent_eof and not self._unacked:
                        self._eof_acked = True
                self._maybe_done()
                continue
            if kind == ABORT:
                self._fail("the other end failed: %s" % payload.decode("utf-8", "replace"), tell=False)
                return
            if kind not in (DATA, EOF):
                raise RelayError("unexpected frame kind %d" % kind)
            if counter < self._in_next:
                continue  # resent after a break, already delivered
            if counter > self._in_next:
                raise RelayError("a frame is missing")
            self._in_next += 1
            self._since_ack += 1
            if kind == DATA:
                self._peer_tail.add(payload)
                self._local_sock().sendall(payload)
                self.bytes_in += len(payload)
            else:
                self._peer_eof = True
                self._peer_ended()
            if kind == EOF or self._since_ack >= ACK_EVERY:
                self._since_ack = 0
                self._send_ctl(ACK, _IDX.pack(self._in_next))
            self._maybe_done()

    def _peer_ended(self) -> None:
        local = self._local_sock()
        if self._lazy_client == "peer" and not self._peer_tail.ended_with_close():
            self._fail("the lazy-pages client on the other host stopped before every page was served")
            return
        try:
            local.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # ---- local side ----------------------------------------------------------------------------

    def _local_sock(self) -> socket.socket:
        # One connection to CRIU, made once by whichever thread needs it first. Making it may wait long
        # (for CRIU to listen), so it holds its own lock, not the one _fail takes to reset it.
        with self._making_lock:
            local = self._local
            if local is None and not self._made:
                local = self._local_arg() if callable(self._local_arg) else self._local_arg
                if local is not None and local.family != socket.AF_UNIX:
                    # CRIU's lazy pages ask one small request at a time: Nagle would hold each back.
                    local.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._made = True
                with self._local_lock:
                    self._local = local
            if local is None:
                raise OSError("this host's CRIU connection was reset (the link failed)")
            return local

    def _pump_local(self) -> None:
        try:
            local = self._local_sock()
            if self.done.is_set() and self.error:
                # The link failed while this CRIU was still on its way (a dump about to serve its
                # lazy pages): it gets its reset now, or it would wait for a client forever.
                _abort(local)
                return
            while not self.done.is_set():
                data = local.recv(CHUNK)
                if self.done.is_set():
                    return
                if not data and self._lazy_client == "local" and not self._local_tail.ended_with_close():
                    self._fail("the lazy-pages client here stopped before every page was served")
                    return
                self._local_tail.add(data)
                with self._lock:
                    while self._unacked_bytes > WINDOW and not self.done.is_set():
                        self._lock.wait(1)
                    kind = DATA if data else EOF
                    frame = self._frame(kind, self._out_index, data)
                    self._unacked.append((self._out_index, frame))
                    self._unacked_bytes += len(frame)
                    self._out_index += 1
                    if not data:
                        self._sent_eof = True
                self.bytes_out += len(data)
                self._send(frame)
                if not data:
                    return
        except OSError as exc:
            if not self.done.is_set():
                self._fail("this host's CRIU connection failed: %s" % exc)

    def _maybe_done(self) -> None:
        if self._peer_eof and self._eof_acked:
            self.done.set()

    def _fail(self, message: str, tell: bool = True) -> None:
        if self.done.is_set():
            return
        self.error = message
        self.done.set()
        if self._on_failure:
            try:
                self._on_failure()
            except Exception:  # pylint: disable=broad-except
                pass
        with self._local_lock:
            _abort(self._local)
            self._local = None
        if tell:
            with self._lock:  # a link coming up right now sends it instead (see _connect)
                self._abort_note = message.encode()[:512]
            self._send_ctl(ABORT, self._abort_note)

    def _heartbeat(self) -> None:
        while not self.done.wait(HEARTBEAT):
            self._send_ctl(ACK, _IDX.pack(self._in_next))

    # ---- running -------------------------------------------------------------------------------

    def start(self) -> "Relay":
        threading.Thread(target=self._keeper, daemon=True).start()
        threading.Thread(target=self._pump_local, daemon=True).start()
        threading.Thread(target=self._heartbeat, daemon=True).start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True when both directions ended cleanly; False on failure or timeout (see ``error``)."""
        finished = self.done.wait(timeout)
        if not finished:
            self.error = self.error or "the page link did not finish within %s s" % timeout
        self.close()
        return finished and self.error is None

    def close(self) -> None:
        self.done.set()
        with self._lock:
            net, self._net = self._net, None
        for sock in (net, self._listener):
            if sock is not None:
                _shut(sock, socket.SHUT_RDWR)  # the other end sees the session end, after what was sent
        # Shut, not just close: a thread blocked reading it would keep it open, and CRIU waiting.
        # After a failure (set before ``done``, so seen here) CRIU gets a reset, never a clean end.
        local = self._local
        if local is not None:
            if self.error is None:
                _shut(local, socket.SHUT_RDWR)
            else:
                _abort(local)
        if hasattr(self._dial, "close"):
            self._dial.close()  # its SSH sessions, and the private copy of the key

    def figures(self) -> dict[str, t.Any]:
        return {"bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "reconnects": self.reconnects,
                "error": self.error}
