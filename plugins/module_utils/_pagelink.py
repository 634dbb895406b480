# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Both ends of a page link (see _relay) as Ferry's modules use them.

Streamed memory (``stream``): the source's CRIU dump sends its pages to a CRIU page server on the
target, which writes them to ``<images_dir>/.pages-<id>``; restore moves them into the bundle.
Post-copy (``post_copy``): the source's CRIU keeps the frozen tree's pages and serves them; the
target's lazy-pages daemon fetches them while the restored tree already runs.

Over ``ssh``, the target end is a small daemon the module ``page_link`` leaves running. It listens on
a unix socket in the private images directory (``_wire.link_socket``), which only the forced command
of the checkpoint's one-time SSH key joins; the source's end dials that key through OpenSSH
(``_transport.LinkDialer``).

Over ``tls`` (a stream only), the two CRIUs talk to each other directly with CRIU's own TLS (GnuTLS),
both holding the migration's one-time certificate (lookup ``page_server_tls``), so no byte passes
through Python. Nothing resends after a break there: a broken stream fails the dump and the source's
tree runs on. A small daemon still watches the page server, to end it when ``expires_in`` passes and
to count what it wrote.

Either way the daemon records its state in ``<images_dir>/.link-<id>.json`` for ``restore`` and for
``page_link state=absent``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _criu, _engine, _transport, _wire
from ansible_collections.ferry.migrate.plugins.module_utils._files import write_json_atomic
from ansible_collections.ferry.migrate.plugins.module_utils._relay import Relay, RelayError

METHODS = ("stream", "post_copy")
# A stream's one-time TLS credentials (lookup page_server_tls), as both ends' modules take them.
TLS_SPEC = dict(
    ca=dict(type="str", required=True),
    cert=dict(type="str", required=True),
    key=dict(type="str", required=True, no_log=True),
)


def pages_dir(images_dir: str, checkpoint_id: str) -> str:
    return os.path.join(images_dir, ".pages-" + _bundle.check_id(checkpoint_id))


def tls_files(directory: str, credentials: dict[str, str]) -> dict[str, str]:
    """The one-time TLS credentials written into a new private directory, as CRIU's --tls-* files."""
    _bundle.make_private_dir(directory)
    paths = {}
    for name in ("ca", "cert", "key"):
        paths[name] = os.path.join(directory, name + ".pem")
        fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(credentials[name])
    return paths


def page_bytes(directory: str) -> int:
    """What a page server wrote: the size of its page images."""
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)
               if name.startswith("pages-") and name.endswith(".img"))


def state_path(images_dir: str, checkpoint_id: str) -> str:
    return os.path.join(images_dir, ".link-" + _bundle.check_id(checkpoint_id) + ".json")


def read_state(images_dir: str, checkpoint_id: str) -> dict[str, t.Any] | None:
    try:
        with open(state_path(images_dir, checkpoint_id), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_state(images_dir: str, checkpoint_id: str, state: dict[str, t.Any]) -> None:
    write_json_atomic(state_path(images_dir, checkpoint_id), state)


def _kill_tree(pidfile: str | None) -> None:
    """A post-copy target whose pages can no longer come must not run on with holes in its memory."""
    try:
        with open(pidfile or "", encoding="ascii") as handle:
            os.kill(int(handle.read().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _accept_one(listener: socket.socket, timeout: float) -> t.Callable[[], socket.socket]:
    def accept() -> socket.socket:
        listener.settimeout(timeout)
        try:
            conn, _addr = listener.accept()
        finally:
            listener.close()
        conn.settimeout(None)
        return conn
    return accept


def start_target(criu: t.Any, run: t.Callable, images_dir: str, checkpoint_id: str, method: str, give_up: float,
                 expires_in: float, pidfile: str | None, tls: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Open the target end and leave it running in a daemon; returns {local_port, pid}, or with ``tls``
    (a stream's one-time credentials) {port, pid}: the page server's port for the source's CRIU."""
    _bundle.make_private_dir(images_dir)
    if tls:
        return _start_tls_target(criu, run, images_dir, checkpoint_id, expires_in, tls)
    path = _wire.link_socket(images_dir, checkpoint_id)
    if os.path.lexists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    local_port = None
    if method == "stream":
        server_port = free_port()
        server_pid = _start_page_server(criu, run, images_dir, checkpoint_id, server_port)
        local: t.Any = socket.create_connection(("127.0.0.1", server_port), timeout=10)  # its only client
        local.settimeout(None)  # writing pages to disk may keep it from reading for long: that is no failure
    else:
        server_pid = None
        local_listener = socket.create_server(("127.0.0.1", 0))
        local_port = local_listener.getsockname()[1]
        local = _accept_one(local_listener, expires_in)
    pid = _spawn(images_dir, checkpoint_id, _serve_target(images_dir, checkpoint_id, method, listener, give_up, expires_in,
                                                          pidfile, local, server_pid, local_port))
    listener.close()
    if not callable(local):
        local.close()
    return {"local_port": local_port, "pid": pid}


def _start_page_server(criu, run, images_dir, checkpoint_id, port, tls=None) -> int:
    """CRIU's page server on ``port``, writing into a fresh pages directory; returns its pid."""
    directory = pages_dir(images_dir, checkpoint_id)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)
    pidfile = os.path.join(directory, "page-server.pid")
    files = tls_files(_bundle.credentials_path(images_dir, checkpoint_id), tls) if tls else None
    rc, _out, err = run(criu.page_server_argv(directory, port, pidfile, tls=files))
    if rc != 0:
        raise RelayError("criu page-server did not start on port %d: %s" % (port, err.strip()))
    with open(pidfile, encoding="ascii") as handle:
        return int(handle.read().strip())


def _start_tls_target(criu, run, images_dir, checkpoint_id, expires_in, tls):
    port = tls.get("port") or free_port("")
    server_pid = _start_page_server(criu, run, images_dir, checkpoint_id, port, tls)
    watch = _watch_tls_target(images_dir, checkpoint_id, port, server_pid, expires_in)
    return {"port": port, "pid": _spawn(images_dir, checkpoint_id, watch)}


def _watch_tls_target(images_dir, checkpoint_id, port, server_pid, expires_in):
    directory = pages_dir(images_dir, checkpoint_id)

    def watch(ready: int) -> None:
        state = {"state": "running", "method": "stream", "transport": "tls", "pid": os.getpid(), "port": port,
                 "page_server_pid": server_pid, "started_at": time.time()}
        _write_state(images_dir, checkpoint_id, state)
        os.close(ready)
        deadline = time.monotonic() + expires_in
        while _wire.alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        expired = _wire.alive(server_pid)
        if expired:
            os.kill(server_pid, signal.SIGKILL)
        shutil.rmtree(_bundle.credentials_path(images_dir, checkpoint_id), ignore_errors=True)  # the key is of no more use
        _write_state(images_dir, checkpoint_id, dict(state, state="failed" if expired else "done", ended_at=time.time(),
                                                     error="expired" if expired else None, bytes_in=page_bytes(directory)))
    return watch


def _spawn(images_dir: str, checkpoint_id: str, serve: t.Callable[[int], None]) -> int | None:
    """Run ``serve(ready_fd)`` in a daemon; returns the daemon's pid once it has written its state."""
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            ready.read()  # the daemon closes it once its state is written
        return (read_state(images_dir, checkpoint_id) or {}).get("pid")
    _daemon(ready_r, ready_w, serve,
            lambda exc: _write_state(images_dir, checkpoint_id, {"state": "failed", "error": repr(exc), "pid": None}))
    return None  # not reached: the daemon exits


def _daemon(ready_r: int, ready_w: int, serve: t.Callable[[int], None], crashed: t.Callable[[BaseException], None]) -> None:
    code = 1
    try:
        os.close(ready_r)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # Ansible waits for the module's output to end
        serve(ready_w)
        code = 0
    except BaseException as exc:  # pylint: disable=broad-except
        crashed(exc)  # a daemon has nobody to raise to: its state file says what happened
    finally:
        os._exit(code)  # pylint: disable=protected-access


def _serve_target(images_dir, checkpoint_id, method, listener, give_up, expires_in, pidfile, local, server_pid, local_port):
    def finish(ready_w: int) -> None:
        relay = Relay(checkpoint_id, local, listener=listener, give_up=give_up,
                      on_failure=(lambda: _kill_tree(pidfile)) if method == "post_copy" else None,
                      lazy_client="local" if method == "post_copy" else None)
        state = {"state": "running", "method": method, "pid": os.getpid(), "local_port": local_port,
                 "page_server_pid": server_pid, "started_at": time.time()}
        _write_state(images_dir, checkpoint_id, state)
        os.close(ready_w)
        relay.start()
        ok = relay.wait(expires_in)
        if server_pid:  # the page server writes its last image before it exits
            deadline = time.monotonic() + 30
            while _wire.alive(server_pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        _write_state(images_dir, checkpoint_id, dict(state, state="done" if ok else "failed", ended_at=time.time(),
                                                     **relay.figures()))
    return finish


def stop_target(images_dir: str, checkpoint_id: str) -> bool:
    """Stop the target end if it runs and remove what it left; True when something was there."""
    state = read_state(images_dir, checkpoint_id)
    directories = (pages_dir(images_dir, checkpoint_id), _bundle.credentials_path(images_dir, checkpoint_id))
    found = state is not None or any(os.path.lexists(directory) for directory in directories)
    for pid in ((state or {}).get("pid"), (state or {}).get("page_server_pid")):
        if _wire.alive(pid):
            os.kill(pid, signal.SIGKILL)
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
    for path in (state_path(images_dir, checkpoint_id), state_path(images_dir, checkpoint_id) + ".tmp",
                 _wire.link_socket(images_dir, checkpoint_id)):
        if os.path.lexists(path):
            os.unlink(path)
    return found


def streamed_pages(images_dir: str, checkpoint_id: str, expected_bytes: int, wait: float = 30.0) -> list[str]:
    """The page images a finished stream left here, once the link says every byte arrived."""
    deadline = time.monotonic() + wait
    while True:
        state = read_state(images_dir, checkpoint_id) or {}
        if state.get("state") in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if state.get("state") != "done":
        raise RelayError("the page stream did not finish: %s" % (state.get("error") or state.get("state") or "no page link here"))
    if state.get("bytes_in") != expected_bytes:
        raise RelayError("the page stream delivered %s bytes, the source sent %d" % (state.get("bytes_in"), expected_bytes))
    directory = pages_dir(images_dir, checkpoint_id)
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if name.startswith(("pagemap-", "pages-")) and name.endswith(".img"))


# ---- the source end: one relay inside the checkpoint module's own process ---------------------------

def dialer(link: dict[str, t.Any]) -> _transport.LinkDialer:
    """SSH sessions to the target's end, as checkpoint's option page_link describes it."""
    try:
        return _transport.LinkDialer(link["checkpoint_id"], link["target"], link["port"], link["user"], link["private_key"],
                                     link["host_keys"])
    except _transport.TransportError as exc:
        raise OSError("page_link: %s" % exc) from None


def source_stream(link: dict[str, t.Any]) -> tuple[Relay, int]:
    """A relay for a dump whose page server is 127.0.0.1:<returned port>."""
    listener = socket.create_server(("127.0.0.1", 0))
    relay = Relay(link["checkpoint_id"], _accept_one(listener, 120), dial=dialer(link), give_up=link["give_up"])
    return relay.start(), listener.getsockname()[1]


def free_port(address: str = "127.0.0.1") -> int:
    with socket.create_server((address, 0)) as sock:
        return sock.getsockname()[1]


def source_lazy(link: dict[str, t.Any], lazy_port: int, listening: threading.Event) -> Relay:
    """A relay to the lazy-pages server CRIU opens on 127.0.0.1:``lazy_port`` once ``listening`` is set."""
    def connect() -> socket.socket:
        if not listening.wait(600):
            raise OSError("CRIU never started serving pages")
        conn = socket.create_connection(("127.0.0.1", lazy_port), timeout=10)
        conn.settimeout(None)
        return conn
    return Relay(link["checkpoint_id"], connect, dial=dialer(link), give_up=link["give_up"], lazy_client="peer").start()


def run(module: t.Any) -> None:
    """Module ferry.migrate.page_link: open (or find already open) or close the target's end."""
    params = module.params
    _engine.check_checkpoint_id(module, params["checkpoint_id"])
    if params["state"] == "absent":
        present = read_state(params["images_dir"], params["checkpoint_id"]) is not None
        if not module.check_mode:
            present = stop_target(params["images_dir"], params["checkpoint_id"]) or present
        module.exit_json(changed=present)

    if params["give_up"] <= 0:
        module.fail_json(msg="give_up: must be a positive number of seconds")
    if params["tls"] and params["method"] != "stream":
        module.fail_json(msg="tls: only a stream goes over CRIU's TLS page server; post-copy needs the resumable SSH link")
    if params["method"] == "post_copy" and not params["pidfile"]:
        module.fail_json(msg="pidfile: required with method post_copy (the tree to stop if its pages cannot arrive)")
    state = read_state(params["images_dir"], params["checkpoint_id"])
    if state and state.get("state") == "running" and _wire.alive(state.get("pid")):
        module.exit_json(changed=False, local_port=state.get("local_port"), port=state.get("port"), pid=state["pid"])
    if module.check_mode:
        module.exit_json(changed=True)
    stop_target(params["images_dir"], params["checkpoint_id"])  # a finished or dead one's leftovers
    criu = _criu.Criu(_criu.find_binary(params["criu_path"]) or "criu") if params["method"] == "stream" else None
    try:
        opened = start_target(
            criu, module.run_command, params["images_dir"], params["checkpoint_id"], params["method"], params["give_up"],
            params["expires_in"], params["pidfile"], params["tls"])
    except (OSError, RelayError, _criu.CriuError) as exc:
        module.fail_json(msg="could not open the page link: %s" % exc, detail=getattr(exc, "log", ""))
    module.exit_json(changed=True, **opened)
