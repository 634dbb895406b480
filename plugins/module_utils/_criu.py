# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRIU through pycriu's RPC: locating a working binary, feature detection, the readiness probe,
dump and restore of process trees. Everything here runs on a managed host."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _host


class _Pycriu:
    """pycriu, imported on its first use: its protobuf modules cost every module run ~35 ms of CPU,
    and most runs (container_info, a cleanup, a grant) never talk to CRIU."""

    def __getattr__(self, name: str) -> t.Any:
        try:
            import pycriu as module  # pylint: disable=import-outside-toplevel
        except Exception as exc:  # pylint: disable=broad-except
            raise CriuError("pycriu is not importable by this interpreter: %s" % exc) from None
        globals()["pycriu"] = module
        return getattr(module, name)


pycriu: t.Any = _Pycriu()


def pycriu_error() -> str | None:
    """Why this interpreter cannot import pycriu, or None when it can."""
    try:
        getattr(pycriu, "criu")
    except CriuError as exc:
        return str(exc)
    return None


MIN_VERSION = (4, 2)
# Post-copy moves pages through pipes of this size; a smaller fs.pipe-max-size makes CRIU fail.
POST_COPY_PIPE_SIZE = 4 * 1024 * 1024
# Searched in this order when the user names no binary: a locally built CRIU must win over a
# distribution's older /usr/sbin/criu, whatever PATH says.
CANDIDATES = ("/usr/local/sbin/criu", "/usr/local/bin/criu", "/usr/sbin/criu", "/usr/bin/criu")
CAP_SYS_RESOURCE = 24
# CRIU's cpu_cap bits (criu/include/cr_options.h); rpc.proto carries them as a plain integer.
CPU_CAP_FPU, CPU_CAP_INS = 1 << 0, 1 << 2


class CriuError(Exception):
    """A CRIU operation failed; ``log`` holds the tail of CRIU's own log when there is one."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


def parse_version(text: str) -> tuple[int, ...] | None:
    """Version from ``criu --version`` output ("Version: 4.2.1") or a bare "4.2.1"."""
    match = re.search(r"(?:Version:\s*)?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def version_string(version: t.Sequence[int] | None) -> str | None:
    return ".".join(str(part) for part in version) if version else None


def find_binary(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("criu")


def binary_version(path: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return None
    return parse_version(out)


def log_tail(directory: str, name: str, lines: int = 15) -> str:
    try:
        with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def runc_log_errors(text: str) -> str:
    """CRIU's own error lines from the log that runc names in ``text`` ("log file: <path>"): podman and
    docker only relay "criu failed", and the container's copy of the log goes when it is removed."""
    match = re.search(r"log file: (/[^\s\"\\]+\.log)", text)
    if not match:
        return ""
    lines = log_tail(os.path.dirname(match.group(1)), os.path.basename(match.group(1)), 400).splitlines()
    errors = [line for line in lines if "Error" in line and "rlimit" not in line]
    return "CRIU: %s\n" % "\n".join(errors[-8:]) if errors else ""


def pstree_processes(pstree: bytes) -> list[dict[str, t.Any]] | None:
    """The processes in a pstree.img, or None without pycriu to decode it."""
    if pycriu_error():
        return None
    entries = pycriu.images.load(io.BytesIO(pstree))["entries"]
    return [{"pid": e["pid"], "ppid": e["ppid"], "sid": e.get("sid")} for e in entries]


def has_cap_sys_resource() -> bool:
    """Without CAP_SYS_RESOURCE in the bounding set CRIU cannot dump another user's process."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("CapBnd:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


class Criu:
    """One CRIU binary driven through pycriu's RPC (``criu swrk``)."""

    def __init__(self, binary: str):
        self.binary = binary  # pycriu is imported by the first request
        self._version: tuple[int, ...] | None = None

    def _new(self, images_dir: str | None = None, log_file: str | None = None, **opts: t.Any) -> t.Any:
        client = pycriu.criu()
        client.use_binary(self.binary)
        if images_dir is not None:
            client.opts.images_dir_fd = os.open(images_dir, os.O_DIRECTORY)
        if log_file:
            client.opts.log_file = log_file
            client.opts.log_level = 4
        for key, value in opts.items():
            if value is None:
                continue
            if key == "ps":  # a message, not a scalar
                client.opts.ps.MergeFrom(pycriu.rpc.criu_page_server_info(**value))
                continue
            field = getattr(client.opts, key)
            if isinstance(value, list):
                del field[:]
                field.extend(value)
            else:
                setattr(client.opts, key, value)
        return client

    @staticmethod
    def _close(client: t.Any) -> None:
        if client.opts.images_dir_fd >= 0:
            os.close(client.opts.images_dir_fd)

    def _request(self, req_type: int, client: t.Any | None = None, **fields: t.Any) -> t.Any:
        """Requests pycriu has no method for (VERSION, FEATURE_CHECK, CPUINFO_*), on its channel."""
        client = client or self._new()
        req = pycriu.rpc.criu_req()
        req.type = req_type
        req.opts.MergeFrom(client.opts)
        for key, value in fields.items():
            getattr(req, key).MergeFrom(value)
        # pylint: disable-next=protected-access
        return client._send_req_and_recv_resp(req)

    def version(self) -> tuple[int, ...] | None:
        if self._version is None:  # asked once: the binary does not change under a module run
            resp = self._request(pycriu.rpc.VERSION)
            if not resp.success:
                return None
            parts = [resp.version.major_number, resp.version.minor_number]
            if resp.version.HasField("sublevel"):
                parts.append(resp.version.sublevel)
            self._version = tuple(parts)
        return self._version

    def check(self) -> bool:
        try:
            self._new().check()
        except pycriu.CRIUException:
            return False
        return True

    def features(self) -> dict[str, bool]:
        """What the kernel lets CRIU do: dirty-memory tracking (pre-copy) and lazy pages (post-copy)."""
        wanted = pycriu.rpc.criu_features(mem_track=True, lazy_pages=True, pidfd_store=True)
        resp = self._request(pycriu.rpc.FEATURE_CHECK, features=wanted)
        got = resp.features
        return {
            "mem_dirty_track": got.mem_track,
            "lazy_pages": got.lazy_pages,
            "pidfd_store": got.pidfd_store,
        }

    def page_server_tls(self) -> bool:
        # CRIU links GnuTLS only when built with TLS support; there is no RPC feature for it.
        with open(self.binary, "rb") as handle:
            return b"gnutls_" in handle.read()

    def cpuinfo_dump(self, images_dir: str) -> None:
        client = self._new(images_dir)
        try:
            resp = self._request(pycriu.rpc.CPUINFO_DUMP, client)
        finally:
            self._close(client)
        if not resp.success:
            raise CriuError("cpuinfo dump failed (errno %d)" % resp.cr_errno)

    def cpuinfo_check(self, images_dir: str) -> bool:
        """True when this host's CPU can run processes dumped on the host that wrote cpuinfo.img."""
        client = self._new(images_dir, cpu_cap=CPU_CAP_FPU | CPU_CAP_INS)
        try:
            return bool(self._request(pycriu.rpc.CPUINFO_CHECK, client).success)
        finally:
            self._close(client)

    def cpuinfo_digest(self) -> str:
        workdir = tempfile.mkdtemp(prefix="ferry-cpuinfo-")
        try:
            self.cpuinfo_dump(workdir)
            with open(os.path.join(workdir, "cpuinfo.img"), "rb") as handle:
                return hashlib.sha256(handle.read()).hexdigest()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def dump(self, images_dir: str, pid: int, notify: t.Callable[[str], bool] | None = None, **opts: t.Any) -> t.Any:
        """Dump ``pid``; ``notify(script)`` is asked at each of CRIU's action-script points ("post-dump":
        every image but the lazy pages is written) and a False answer makes CRIU resume the tree."""
        client = self._new(images_dir, log_file="dump.log", pid=pid, notify_scripts=bool(notify) or None, **opts)
        try:
            if notify is None:
                return client.dump()
            return self._dump_notified(client, notify)
        except pycriu.CRIUException as exc:
            raise CriuError("criu dump of pid %d failed: %s" % (pid, exc), log_tail(images_dir, "dump.log"))
        finally:
            self._close(client)

    def pre_dump(self, images_dir: str, pid: int, parent_img: str | None = None) -> None:
        """A pre-dump of ``pid``'s memory, tracking what it dirties from now on; with ``parent_img`` (an
        earlier pre-dump's directory, relative to ``images_dir``), only the pages changed since. The
        tree is frozen while its pages are collected, and runs on while they are written."""
        client = self._new(images_dir, log_file="pre-dump.log", pid=pid, track_mem=True, parent_img=parent_img)
        try:
            client.pre_dump()
        except pycriu.CRIUException as exc:
            raise CriuError("criu pre-dump of pid %d failed: %s" % (pid, exc), log_tail(images_dir, "pre-dump.log"))
        finally:
            self._close(client)

    @staticmethod
    def _dump_notified(client: t.Any, notify: t.Callable[[str], bool]) -> t.Any:
        """pycriu's dump() cannot answer CRIU's notifications; this is its loop with answers."""
        req = pycriu.rpc.criu_req(type=pycriu.rpc.DUMP)
        req.opts.MergeFrom(client.opts)
        # pylint: disable-next=protected-access
        sock = client._comm.connect(False)
        try:
            sock.send(req.SerializeToString())
            while True:
                resp = pycriu.rpc.criu_resp()
                resp.ParseFromString(sock.recv(len(sock.recv(1, socket.MSG_TRUNC | socket.MSG_PEEK))))
                if resp.type != pycriu.rpc.NOTIFY:
                    break
                answer = pycriu.rpc.criu_req(type=pycriu.rpc.NOTIFY, notify_success=bool(notify(resp.notify.script)))
                sock.send(answer.SerializeToString())
        finally:
            client._comm.disconnect()  # pylint: disable=protected-access
        if not resp.success:
            raise pycriu.CRIUExceptionExternal(req.type, resp.type, resp.cr_errno)
        return resp.dump

    def page_server_argv(self, images_dir: str, port: int, pidfile: str, tls: dict[str, str] | None = None) -> list[str]:
        """A page server writing into ``images_dir``: on 127.0.0.1:``port`` for Ferry's relay, or, with
        ``tls`` (the files of tls_files), on every address for the source's CRIU itself, which must then
        prove it holds the migration's one-time certificate. It serves one connection and exits when
        that ends. (CRIU's RPC page server cannot open its images once the requesting process is gone,
        so it runs as a command.)"""
        where = ["--tls", "--tls-cacert", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]] if tls else \
            ["--address", "127.0.0.1"]
        return [self.binary, "page-server", "--images-dir", images_dir, "--port", str(port), *where,
                "--log-file", "page-server.log", "-v4", "--daemon", "--pidfile", pidfile]

    def lazy_pages_argv(self, images_dir: str, port: int, pidfile: str) -> list[str]:
        """The lazy-pages daemon of a post-copy restore, fetching pages from 127.0.0.1:``port``."""
        return [self.binary, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", str(port),
                "--images-dir", images_dir, "--log-file", "lazy-pages.log", "-v4", "--daemon", "--pidfile", pidfile]

    def restore(self, images_dir: str, **opts: t.Any) -> int:
        client = self._new(images_dir, log_file="restore.log", **opts)
        try:
            return client.restore().pid
        except pycriu.CRIUException as exc:
            raise CriuError("criu restore failed: %s" % exc, log_tail(images_dir, "restore.log"))
        finally:
            self._close(client)

    def probe(self) -> dict[str, t.Any]:
        """Prove CRIU works here: dump and restore a process holding a listening TCP socket.

        ``criu check`` alone is not enough: CRIU 4.1 passes it on kernels >= 6.16, yet fails to
        dump any process with an IPv4/IPv6 socket.
        """
        workdir = tempfile.mkdtemp(prefix="ferry-probe-")
        code = ("import socket, time\n"
                "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
                "time.sleep(3600)\n")
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["/usr/bin/python3", "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        restored = None
        try:
            _wait_for_socket(proc.pid)
            started = time.monotonic()
            self.dump(workdir, proc.pid)
            proc.wait()  # reap it, or its zombie keeps the pid the restore needs
            restored = self.restore(workdir)
            _wait_for_socket(restored)
            return {"ok": True, "seconds": round(time.monotonic() - started, 3), "error": None}
        except (CriuError, OSError, RuntimeError) as exc:
            return {"ok": False, "seconds": None, "error": "%s\n%s" % (exc, getattr(exc, "log", ""))}
        finally:
            for pid in (proc.pid, restored):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            if proc.poll() is None:
                proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_socket(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
                   for fd in os.listdir("/proc/%d/fd" % pid)):
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("pid %d holds no socket after %.0f s" % (pid, timeout))


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def host_facts(criu_path: str | None, images_dir: str, probe: bool) -> dict[str, t.Any]:
    """What criu_info reports: whether CRIU works here (with the reasons when not), its features,
    the migration methods they allow, and the host's memory and images directory."""
    facts = {
        "binary": None, "version": None, "check": False, "probe": None, "features": {},
        "methods": [], "reasons": [], "cpuinfo_digest": None,
        "can_dump_other_users": has_cap_sys_resource(),
        "pipe_max_size": _read_int("/proc/sys/fs/pipe-max-size"),
        "kernel": os.uname().release,
        "memory": _host.meminfo(),
        "images_dir": images_dir,
        "images_dir_free_bytes": _host.disk_free(images_dir),
    }
    reasons = facts["reasons"]
    binary = find_binary(criu_path)
    unimportable = binary and pycriu_error()
    if not binary:
        reasons.append("no CRIU binary found" + (" at %s" % criu_path if criu_path else ""))
    elif unimportable:
        facts["binary"] = binary
        facts["version"] = version_string(binary_version(binary))
        reasons.append(unimportable)
    else:
        criu = Criu(binary)
        version = criu.version()
        facts.update(binary=binary, version=version_string(version), check=criu.check(),
                     cpuinfo_digest=criu.cpuinfo_digest())
        facts["features"] = dict(criu.features(), page_server_tls=criu.page_server_tls())
        if not version or version < MIN_VERSION:
            reasons.append("CRIU %s is older than %s" % (facts["version"], version_string(MIN_VERSION)))
        if not facts["check"]:
            reasons.append("criu check failed")
        if probe:
            facts["probe"] = criu.probe()
            if not facts["probe"]["ok"]:
                reasons.append("probe dump/restore of a socket-holding process failed: %s" % facts["probe"]["error"])
    facts["ready"] = not reasons
    if facts["ready"]:
        features = facts["features"]
        if features.get("lazy_pages") and (facts["pipe_max_size"] or 0) >= POST_COPY_PIPE_SIZE:
            facts["methods"].append("post_copy")
        if features.get("mem_dirty_track"):
            facts["methods"].append("pre_copy")
        facts["methods"] += ["stream", "stop_and_copy"]
    return facts
