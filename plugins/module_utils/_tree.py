# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The criu engine: a process tree in its own pid (and uts, ipc) namespaces, dumped and restored
through pycriu's RPC. A tree is named; its root's pid (as seen on the host) is kept in a pidfile,
``<tree_dir>/<name>.pid`` unless the caller gives another path. The tree shares the host's mount
and network namespaces, so the files it has open must exist on the target too.

A tree may own addresses (``<pidfile without .pid>.addresses``, one ``A/prefix`` a line) that it
serves on: they move with it (see _address), so its clients' connections survive the migration."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import tempfile
import threading

from ansible_collections.ferry.migrate.plugins.module_utils import _address, _bundle, _pagelink, _wire
from ansible_collections.ferry.migrate.plugins.module_utils._criu import CriuError, log_tail
from ansible_collections.ferry.migrate.plugins.module_utils._engine import CONTAINER_NAME, Engine, EngineError, criu_stats, tree_cpu, tree_pids, tree_rss
from ansible_collections.ferry.migrate.plugins.module_utils._files import write_atomic

DEFAULT_TREE_DIR = "/run/ferry/trees"


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists("/proc/%d" % pid) else None


def write_pid(pidfile: str, pid: int) -> None:
    _write_beside(pidfile, "%d\n" % pid)


def tree_state(pid: int | None) -> str:
    """running, stopped (a stream's source waiting for the target) or exited."""
    if not pid:
        return "exited"
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "exited"
    return "stopped" if state in ("T", "t") else "running"


def dump_options(options: dict) -> dict:
    return {
        "leave_running": bool(options.get("leave_running")),
        # A streamed dump leaves no pages on the source: the tree stays stopped here, whole, until the
        # target runs it (then it is killed) or the migration rolls back (then it continues).
        "leave_stopped": options.get("method") == "stream" and not options.get("leave_running") or None,
        "tcp_established": bool(options.get("tcp_established")),
        # A connection the kernel accepted but the process did not yet: the client gets a reset and
        # retries; without this CRIU refuses to dump any server that is being connected to.
        "tcp_skip_in_flight": bool(options.get("tcp_established")),
        "file_locks": bool(options.get("file_locks")),
    }


def addresses_file(pidfile: str) -> str:
    return pidfile[:-4] + ".addresses" if pidfile.endswith(".pid") else pidfile + ".addresses"


def read_addresses(pidfile: str) -> list[str]:
    try:
        with open(addresses_file(pidfile), encoding="ascii") as handle:
            return [_address.check(line.strip()) for line in handle if line.strip()]
    except OSError:
        return []


def write_addresses(pidfile: str, addresses: list[str]) -> None:
    if addresses:
        _write_beside(addresses_file(pidfile), "".join(a + "\n" for a in addresses))


def _write_beside(path: str, text: str) -> None:
    """A tree's files on a host where no tree ran before: the directory is made first."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_atomic(path, text, 0o644)


def _loopback_config(images_dir: str) -> str:
    """A CRIU configuration file keeping the lazy-pages server on loopback; the caller removes it."""
    fd, path = tempfile.mkstemp(prefix=".criu-", suffix=".conf", dir=images_dir)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("address 127.0.0.1\n")
    return path


def pid_file_name(name: str) -> str:
    """A tree's pidfile name: the tree's name (a container name, up to 253 characters) within the 255
    a file name may have, and the same on every host."""
    if not CONTAINER_NAME.match(name or ""):
        raise EngineError("name %r must be a container name of [A-Za-z0-9_.-] starting with a letter or digit" % (name,))
    if len(name) <= 128:
        return name + ".pid"
    return "%s-%s.pid" % (name[:111], hashlib.sha256(name.encode("ascii")).hexdigest()[:16])


def _tls_why(link, log):
    """What went wrong between the two CRIUs of a TLS stream, from the dump's log."""
    where = "%s:%s" % (link["target"], link["tls"]["port"])
    if "Can't connect to server" in (log or ""):
        return (" (the source could not reach the target's TLS page server at %s: a firewall between them? "
                "Open a fixed migrate_stream_port, or set migrate_stream_transport to ssh, which needs only the SSH port)"
                % where)
    if "tls:" in (log or ""):
        return " (the TLS handshake with the target's page server at %s failed)" % where
    return ""


class TreeEngine(Engine):
    name = "criu"
    # A tree runs on the host itself, found through its pidfile; CRIU's page server and lazy pages move its memory.
    capabilities = {"methods": ["post_copy", "pre_copy", "stream", "stop_and_copy"], "carries_image": False, "exec": [], "identity": "pidfile",
                    "shares_files": False, "pre_dumps": None, "streams": []}

    def _pidfile(self, name: str) -> str:
        return self.module.params.get("pidfile") or os.path.join(self.module.params.get("tree_dir") or DEFAULT_TREE_DIR, pid_file_name(name))

    def _summary(self, name: str, pidfile: str) -> dict:
        pid = read_pid(pidfile)
        return {"engine": "criu", "name": name, "id": name, "pidfile": pidfile, "pid": pid,
                "state": tree_state(pid), "image_id": None, "image_name": None, "labels": {},
                "addresses": read_addresses(pidfile), "rss_bytes": tree_rss(pid), "cpu": tree_cpu(pid),
                "checkpointed": False, "cannot_move": [], "host_paths": []}

    def _moving(self, info, here):
        """Put the tree's addresses on this host (``here``) or take them off it."""
        addresses = _address.Addresses(self.module.run_command)
        for address in info.get("addresses") or []:
            if here:
                addresses.add(address)
            else:
                addresses.remove(address)
        return addresses

    def describe(self, container):
        pidfile = self._pidfile(container)
        return self._summary(container, pidfile) if os.path.exists(pidfile) else None

    def list(self):
        tree_dir = self.module.params.get("tree_dir") or DEFAULT_TREE_DIR
        names = sorted(f[:-4] for f in os.listdir(tree_dir) if f.endswith(".pid")) if os.path.isdir(tree_dir) else []
        return [self._summary(name, os.path.join(tree_dir, pid_file_name(name))) for name in names]

    def _running(self, container):
        info = self.describe(container)
        if not info or not info["pid"]:
            raise EngineError("no running process tree %s (pidfile %s)" % (container, self._pidfile(container)))
        return info

    def pre_dump(self, container, bundle_dir, parent):
        info = self._running(container)
        try:
            self.criu.pre_dump(bundle_dir, info["pid"], _bundle.parent_target(parent) if parent else None)
        except CriuError as exc:
            raise EngineError(str(exc), exc.log) from exc
        return {"container": info, "stats": criu_stats(bundle_dir, "stats-dump")}

    def checkpoint(self, container, bundle_dir, options, handover=None):
        info = self._running(container)
        method = options.get("method") or "stop_and_copy"
        link = options.get("page_link") or {}
        extra, relay, fields, tls_dir = {}, None, {"container": info}, None
        if options.get("parent"):  # pre-copy's last dump: only what changed since the last iteration
            extra = {"track_mem": True, "parent_img": _bundle.parent_target(options["parent"])}
        elif method == "stream" and link.get("tls"):
            # CRIU itself, over its TLS, to the target's page server: no relay, no SSH, no Python
            tls_dir = _bundle.credentials_path(os.path.dirname(bundle_dir), link["checkpoint_id"])
            files = _pagelink.tls_files(tls_dir, link["tls"])
            extra = {"ps": {"address": link["target"], "port": link["tls"]["port"]}, "tls": True,
                     "tls_cacert": files["ca"], "tls_cert": files["cert"], "tls_key": files["key"]}
        elif method == "stream":
            relay, port = _pagelink.source_stream(link)
            extra = {"ps": {"address": "127.0.0.1", "port": port}}
        elif method == "post_copy":
            listening = threading.Event()
            lazy_port = _pagelink.free_port()
            relay = _pagelink.source_lazy(link, lazy_port, listening)

            def notify(script):
                if script == "post-dump":  # every image but the lazy pages is written: hand them over
                    self._moving(info, here=False)  # the target takes them the moment it restores
                    if handover(dict(fields, stats={})):  # CRIU writes its statistics at the end
                        return True
                    self._moving(info, here=True)
                    return False
                if script == "status-ready":  # CRIU serves the pages now
                    listening.set()
                return True
            # RPC gives the lazy-pages server no address of its own: a config file keeps it on loopback.
            extra = {"lazy_pages": True, "ps": {"port": lazy_port}, "notify": notify,
                     "config_file": _loopback_config(os.path.dirname(bundle_dir))}
        try:
            self.criu.dump(bundle_dir, info["pid"], **dump_options(options), **extra)
            if relay and not relay.wait(60):
                raise EngineError("the page link failed: %s" % relay.error)
            if not options.get("leave_running"):
                try:
                    self._moving(info, here=False)
                except _address.AddressError as exc:
                    self.resume(bundle_dir, {"container": info}, options)  # it must not stay down for that
                    raise EngineError("%s; %s runs again here" % (exc, container)) from exc
        except CriuError as exc:
            why = (" (the page link: %s)" % relay.error) if relay and relay.error else _tls_why(link, exc.log) if tls_dir else ""
            # CRIU resumed the tree here: its addresses and connections too
            self._moving(info, here=True).unlock(info["addresses"])
            raise EngineError(str(exc) + why, exc.log) from exc
        finally:
            if relay:
                relay.close()
            if extra.get("config_file"):
                os.unlink(extra["config_file"])
            if tls_dir:
                shutil.rmtree(tls_dir, ignore_errors=True)
        fields["stats"] = criu_stats(bundle_dir, "stats-dump")
        if relay:
            fields["page_link"] = dict(relay.figures(), method=method, transport="ssh")
        elif tls_dir:  # what the target's page server must have written, checked there before the restore
            fields["page_link"] = {"method": method, "transport": "tls", "reconnects": 0, "error": None,
                                   "bytes_out": fields["stats"].get("pages_written", 0) * os.sysconf("SC_PAGE_SIZE")}
        return fields

    def restore(self, bundle_dir, manifest, options):
        info = manifest["container"]
        pidfile = info["pidfile"]
        if read_pid(pidfile):
            raise EngineError("process tree %s already runs here (pidfile %s)" % (info["name"], pidfile))
        images_dir, checkpoint_id = os.path.split(bundle_dir)
        method = options.get("method") or "stop_and_copy"
        if method == "stream":
            expected = (manifest.get("page_link") or {}).get("bytes_out", -1)
            for path in _pagelink.streamed_pages(images_dir, checkpoint_id, expected):
                os.replace(path, os.path.join(bundle_dir, os.path.basename(path)))
        # CRIU writes its log and statistics to a work directory: the bundle stays as verified.
        work = tempfile.mkdtemp(prefix=".work-", dir=images_dir)
        work_fd = os.open(work, os.O_DIRECTORY)
        addresses, owned = _address.Addresses(self.module.run_command), info.get("addresses") or []
        try:
            for address in owned:
                addresses.hold(address)  # dropped, not reset, until the sockets are back
                addresses.add(address, announce=False)
            write_addresses(pidfile, owned)
            lazy = None
            if method == "post_copy":
                lazy = self._start_lazy_pages(bundle_dir, work, checkpoint_id)
            pid = self.criu.restore(bundle_dir, work_dir_fd=work_fd, lazy_pages=bool(lazy) or None,
                                    tcp_established=bool(options.get("tcp_established")),
                                    file_locks=bool(options.get("file_locks")))
            write_pid(pidfile, pid)
            stats = criu_stats(work, "stats-restore")
        except (CriuError, _address.AddressError) as exc:
            raise EngineError(str(exc), log_tail(work, "restore.log") or getattr(exc, "log", ""))
        finally:
            os.close(work_fd)
            shutil.rmtree(work, ignore_errors=True)
            for address in owned:
                addresses.release(address)
        for address in owned:
            addresses.announce(address)
        return {"stats": stats, "container": self._summary(info["name"], pidfile)}

    def _start_lazy_pages(self, bundle_dir, work, checkpoint_id):
        """CRIU's lazy-pages daemon, fetching through this host's end of the page link."""
        images_dir = os.path.dirname(bundle_dir)
        state = _pagelink.read_state(images_dir, checkpoint_id) or {}
        if state.get("state") != "running" or not _wire.alive(state.get("pid")):
            raise EngineError("the page link of %s is not open here (%s)" % (checkpoint_id, state.get("error") or state.get("state")))
        argv = self.criu.lazy_pages_argv(bundle_dir, state["local_port"], os.path.join(work, "lazy-pages.pid"))
        rc, _out, err = self.module.run_command(argv + ["--work-dir", work])
        if rc != 0:
            raise EngineError("criu lazy-pages did not start", log_tail(work, "lazy-pages.log") or err)
        return True

    def resume(self, bundle_dir, manifest, options):
        info = manifest["container"]
        pid = read_pid(info["pidfile"])
        if options.get("method") in ("stream", "post_copy"):
            # The tree never left: a stream's stays stopped here until now, a post-copy's CRIU resumes
            # it itself when the transfer fails. Its pages are in its own memory, not in the bundle.
            if tree_state(pid) == "stopped":
                self._moving(info, here=True).unlock(info.get("addresses") or [])
                for each in tree_pids(pid):
                    os.kill(each, signal.SIGCONT)
            if tree_state(pid) != "running":
                raise EngineError("process tree %s is %s here and its pages are not in the bundle: it cannot be resumed"
                                  % (info["name"], tree_state(pid)))
            return {"stats": {}, "container": self._summary(info["name"], info["pidfile"])}
        # The source's own bundle restores as well as any; the connections' locks from the dump go after.
        result = self.restore(bundle_dir, manifest, options)
        _address.Addresses(self.module.run_command).unlock(info.get("addresses") or [])
        return result

    def running(self, manifest):
        return tree_state(read_pid(manifest["container"]["pidfile"])) == "running"

    def exists(self, manifest):
        return os.path.exists(manifest["container"]["pidfile"])

    def remove(self, manifest):
        info = manifest["container"]
        pidfile = info["pidfile"]
        pid, existed = read_pid(pidfile), os.path.exists(pidfile)
        if pid:
            os.kill(pid, signal.SIGKILL)  # the root is its pid namespace's init: the whole tree goes
        # No longer served here, and no connection of it locked here.
        self._moving(info, here=False).unlock(info.get("addresses") or [])
        for path in (addresses_file(pidfile), pidfile):
            if os.path.exists(path):
                os.unlink(path)
        return bool(pid) or existed
