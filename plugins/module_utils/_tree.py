# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The criu engine: a process tree in its own pid (and uts, ipc) namespaces, dumped and restored
through pycriu's RPC. A tree is named; its root's pid (as seen on the host) is kept in a pidfile,
``<tree_dir>/<name>.pid`` unless the caller gives another path. The tree shares the host's mount
and network namespaces, so the files it has open must exist on the target too."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle
from ansible_collections.ferry.migrate.plugins.module_utils._criu import CriuError, log_tail
from ansible_collections.ferry.migrate.plugins.module_utils._engines import Engine, EngineError, criu_stats, tree_cpu, tree_rss

DEFAULT_TREE_DIR = "/run/ferry/trees"


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists("/proc/%d" % pid) else None


def write_pid(pidfile: str, pid: int) -> None:
    os.makedirs(os.path.dirname(pidfile), mode=0o755, exist_ok=True)
    tmp = pidfile + ".tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write("%d\n" % pid)
    os.replace(tmp, pidfile)


def dump_options(options: dict) -> dict:
    return {
        "leave_running": bool(options.get("leave_running")),
        "tcp_established": bool(options.get("tcp_established")),
        # A connection the kernel accepted but the process did not yet: the client gets a reset and
        # retries; without this CRIU refuses to dump any server that is being connected to.
        "tcp_skip_in_flight": bool(options.get("tcp_established")),
        "file_locks": bool(options.get("file_locks")),
    }


class TreeEngine(Engine):
    name = "criu"

    def _pidfile(self, name: str) -> str:
        return self.module.params.get("pidfile") or os.path.join(
            self.module.params.get("tree_dir") or DEFAULT_TREE_DIR, _bundle.check_id(name) + ".pid")

    def _summary(self, name: str, pidfile: str) -> dict:
        pid = read_pid(pidfile)
        return {"engine": "criu", "name": name, "id": name, "pidfile": pidfile, "pid": pid,
                "state": "running" if pid else "exited", "image_id": None, "image_name": None,
                "labels": {}, "addresses": [], "rss_bytes": tree_rss(pid), "cpu": tree_cpu(pid), "checkpointed": False}

    def describe(self, container):
        pidfile = self._pidfile(container)
        return self._summary(container, pidfile) if os.path.exists(pidfile) else None

    def list(self):
        tree_dir = self.module.params.get("tree_dir") or DEFAULT_TREE_DIR
        names = sorted(f[:-4] for f in os.listdir(tree_dir) if f.endswith(".pid")) if os.path.isdir(tree_dir) else []
        return [self._summary(name, os.path.join(tree_dir, name + ".pid")) for name in names]

    def checkpoint(self, container, bundle_dir, options):
        info = self.describe(container)
        if not info or not info["pid"]:
            raise EngineError("no running process tree %s (pidfile %s)" % (container, self._pidfile(container)))
        try:
            self.criu.dump(bundle_dir, info["pid"], **dump_options(options))
        except CriuError as exc:
            raise EngineError(str(exc), exc.log)
        return {"container": info, "stats": criu_stats(bundle_dir, "stats-dump")}

    def _restore(self, bundle_dir, manifest, options):
        info = manifest["container"]
        pidfile = info["pidfile"]
        if read_pid(pidfile):
            raise EngineError("process tree %s already runs here (pidfile %s)" % (info["name"], pidfile))
        # CRIU writes its log and statistics to a work directory: the bundle stays as verified.
        work = tempfile.mkdtemp(prefix=".work-", dir=os.path.dirname(bundle_dir))
        work_fd = os.open(work, os.O_DIRECTORY)
        try:
            pid = self.criu.restore(bundle_dir, work_dir_fd=work_fd,
                                    tcp_established=bool(options.get("tcp_established")),
                                    file_locks=bool(options.get("file_locks")))
            write_pid(pidfile, pid)
            stats = criu_stats(work, "stats-restore")
        except CriuError as exc:
            raise EngineError(str(exc), log_tail(work, "restore.log") or exc.log)
        finally:
            os.close(work_fd)
            shutil.rmtree(work, ignore_errors=True)
        return {"stats": stats, "container": self._summary(info["name"], pidfile)}

    restore = _restore
    resume = _restore  # the source's own bundle is as good a place to resume from as any

    def running(self, manifest):
        return bool(read_pid(manifest["container"]["pidfile"]))

    def exists(self, manifest):
        return os.path.exists(manifest["container"]["pidfile"])

    def remove(self, manifest):
        pidfile = manifest["container"]["pidfile"]
        pid = read_pid(pidfile)
        if pid:
            os.kill(pid, signal.SIGKILL)  # the root is its pid namespace's init: the whole tree goes
        if os.path.exists(pidfile):
            os.unlink(pidfile)
            return True
        return bool(pid)
