# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lxc engine: system containers of LXC (``lxc-checkpoint``, which drives CRIU).

A container is its directory under LXC's lxcpath (``config`` and a directory root filesystem), which
travels as GNU tar archives: when the source sends its bundles itself, the whole directory goes ahead
while the container runs (``files_ahead``: a level-0 archive and its snapshot file), and the bundle
taken in the freeze carries only what changed since (a level-1 archive, deletions included); else the
whole directory is in that bundle. Either is taken once the dump has stopped the container, so the
files are the ones its memory was checkpointed with. The target unpacks them in order at the same
path (CRIU restores mounts by path) and restores. When both hosts see the same directory (shared
storage: the checkpoint's ``files_shared``, which the preflight sets when the two hosts' ``files_id``
agree), nothing of it is copied, and no host removes it: only the container stops there.

LXC passes CRIU no option of Ferry's, so each call gets a CRIU configuration file of its own
(``CRIU_CONFIG_FILE``): the connection options, a work directory outside the bundle, and the older
mount engine, as CRIU's newer one cannot restore LXC's bind mounts of host directories
("move_mount ... Invalid argument" on /lib).

CRIU restores a network namespace's addresses before the iptables rules that lock its connections
(net.c, prepare_net_ns_second_stage): a client's packet arriving in between finds no socket and is
answered with a reset. About one move in ten lost its connection so in the lab; a container with a
large routing table widens the gap to seconds. CRIU runs ``ip`` through ``CR_IP_TOOL``, so a restore
gets one that puts CRIU's own lock on before the addresses (``IP_LOCK_FIRST``); the rules restored
from the dump replace it, and CRIU's unlock at the end of the restore removes it as always.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle
from ansible_collections.ferry.migrate.plugins.module_utils._criu import log_tail
from ansible_collections.ferry.migrate.plugins.module_utils._engine import Engine, EngineError, criu_stats, tree_cpu, tree_rss

ARCHIVE = "container.tar"
SNAPSHOT = "container.snar"  # GNU tar's record of what the level-0 archive holds, for the level-1 one
TAR = ["tar", "--numeric-owner", "--xattrs", "--acls"]
# CRIU's connection lock (net.c, iptables_network_lock_internal; 0xc114 is SOCCR_MARK), put on by the
# ``ip`` a restore runs before it restores the addresses; IPv6 when CRIU locks it too (kdat.ipv6).
IP_LOCK_FIRST = r"""#!{python} -I
import os, subprocess, sys
LOCK = "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n"
if sys.argv[1:3] == ["addr", "restore"]:
    for tool in ["iptables-restore"] + (["ip6tables-restore"] if os.path.exists("/proc/sys/net/ipv6") else []):
        subprocess.run([tool, "-w", "--noflush"], input=LOCK, text=True, check=True)
os.execvp("ip", ["ip"] + sys.argv[1:])
"""
# Network types whose interface is made anew on the target from a link of the host's.
LINKED = ("veth", "macvlan", "ipvlan", "vlan")


def read_config(path: str) -> dict[str, list[str]]:
    """An LXC configuration file: every value of each key, in order (keys repeat: lxc.mount.entry)."""
    config: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            config.setdefault(key, []).append(value)
    return config


def last(config: dict[str, list[str]], key: str, default: str = "") -> str:
    return (config.get(key) or [default])[-1]


def interfaces(config: dict[str, list[str]]) -> list[dict[str, t.Any]]:
    """The container's network interfaces: ``lxc.net.N.*`` by N."""
    found: dict[int, dict[str, t.Any]] = {}
    for key, values in config.items():
        parts = key.split(".", 3)  # lxc.net.0.ipv4.address: the last part has dots of its own
        if len(parts) == 4 and parts[:2] == ["lxc", "net"] and parts[2].isdigit():
            found.setdefault(int(parts[2]), {})[parts[3]] = values if parts[3] in ("ipv4.address", "ipv6.address") else values[-1]
    return [found[index] for index in sorted(found)]


def host_paths(config: dict[str, list[str]]) -> list[str]:
    """The host's paths the container bind-mounts (``lxc.mount.entry``, optional ones aside)."""
    paths = set()
    for entry in config.get("lxc.mount.entry", []):
        fields = entry.split()
        options = fields[3].split(",") if len(fields) > 3 else []
        if fields and fields[0].startswith("/") and "bind" in options and "optional" not in options:
            paths.add(fields[0])
    return sorted(paths)


def files_id(directory: str) -> str:
    """The identity of a container's files: the same on two hosts when both see one directory (shared
    storage hands every client the server's inode numbers and times), different for any two copies."""
    here, config = os.stat(directory), os.stat(os.path.join(directory, "config"))
    return "%d:%d:%d" % (here.st_ino, config.st_ino, config.st_mtime_ns)


def cannot_move(config: dict[str, list[str]], directory: str) -> list[str]:
    """What stops this container from being checkpointed or re-created on another host, named."""
    reasons = []
    ttys = last(config, "lxc.tty.max", "0")
    if ttys not in ("", "0"):
        reasons.append("lxc.tty.max is %s: CRIU cannot checkpoint the ttys LXC gives a container (set lxc.tty.max = 0)" % ttys)
    if last(config, "lxc.console.path") != "none":
        reasons.append("it has a console: CRIU cannot checkpoint LXC's console (set lxc.console.path = none)")
    rootfs = last(config, "lxc.rootfs.path")
    path = rootfs[4:] if rootfs.startswith("dir:") else rootfs
    if os.path.normpath(path) != os.path.join(directory, "rootfs"):
        reasons.append("its root filesystem is %s: only a directory root filesystem in the container's own directory "
                       "(%s/rootfs) travels with it" % (rootfs or "not set", directory))
    for nic in interfaces(config):
        if nic.get("type") == "phys":
            reasons.append("it holds the host's network device %s, which cannot leave this host" % nic.get("link"))
    return reasons


def checkpoint_args(name: str, directory: str, stop: bool) -> list[str]:
    return ["lxc-checkpoint", "--name", name, "--checkpoint-dir", directory] + (["--stop"] if stop else [])


def restore_args(name: str, directory: str) -> list[str]:
    return ["lxc-checkpoint", "--restore", "--daemon", "--name", name, "--checkpoint-dir", directory]


def criu_config(work: str, options: dict[str, t.Any], restore: bool) -> str:
    # The lock IP_LOCK_FIRST puts on is the iptables one, whatever a host's own CRIU configuration says.
    lines = ["work-dir " + work, "network-lock iptables"] + (["mntns-compat-mode"] if restore else [])
    if options.get("tcp_established"):
        # A connection the kernel accepted but the container did not yet: reset, and the client retries.
        lines += ["tcp-established", "skip-in-flight"]
    if options.get("file_locks"):
        lines.append("file-locks")
    return "\n".join(lines) + "\n"


class LxcEngine(Engine):
    name = "lxc"
    # lxc-checkpoint has neither a page server nor a lazy restore on its command line; found by name.
    capabilities = {"methods": ["stop_and_copy"], "carries_image": False, "exec": ["lxc-attach", "--name", "{id}", "--"],
                    "identity": "container name", "shares_files": True,
                    "pre_dumps": None, "streams": []}

    def __init__(self, module, criu):
        super().__init__(module, criu)
        missing = [tool for tool in ("lxc-checkpoint", "lxc-info", "lxc-stop", "lxc-destroy", "tar") if not module.get_bin_path(tool)]
        if missing:
            module.fail_json(msg="engine lxc needs %s on this host: install LXC (role ferry.migrate.criu_host with criu_host_lxc=true)"
                             % ", ".join(missing))
        self.lxcpath = self._run(["lxc-config", "lxc.lxcpath"], "lxc-config").strip() or "/var/lib/lxc"

    def _run(self, argv: list[str], what: str, environ: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> str:
        rc, out, err = self.module.run_command(argv, environ_update=environ or {})
        if rc not in ok:
            words = (err or out).strip()
            raise EngineError("%s: %s exited with %d: %s" % (what, argv[0], rc, (words.splitlines() or [""])[-1]), words[-3000:])
        return out

    def _directory(self, name: str) -> str:
        return os.path.join(self.lxcpath, name)

    def _state(self, name: str) -> tuple[str, int | None]:
        rc, out, _err = self.module.run_command(["lxc-info", "--name", name, "--state", "--pid"])
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line) if rc == 0 else {}
        pid = fields.get("PID", "").strip()
        return fields.get("State", "stopped").strip().lower(), int(pid) if pid.isdigit() else None

    def describe(self, container):
        directory = self._directory(container)
        if not os.path.isfile(os.path.join(directory, "config")):
            return None
        config = read_config(os.path.join(directory, "config"))
        state, pid = self._state(container)
        nics = interfaces(config)
        running = state == "running"
        return {
            "engine": self.name,
            "name": container,
            "id": container,
            "image_id": None,
            "image_name": None,
            "state": state,
            "pid": pid,
            "labels": {},
            "addresses": sorted(address.split("/")[0] for nic in nics for address in nic.get("ipv4.address", [])),
            "networks": sorted({nic["link"] for nic in nics if nic.get("type") in LINKED and nic.get("link")}),
            "rss_bytes": tree_rss(pid) if running else 0,
            "cpu": tree_cpu(pid) if running else 0.0,
            "checkpointed": False,
            "network_mode": None,
            "cannot_move": cannot_move(config, directory),
            "host_paths": host_paths(config),
            "files_id": files_id(directory),
        }

    def list(self):
        names = sorted(os.listdir(self.lxcpath)) if os.path.isdir(self.lxcpath) else []
        return [info for info in (self.describe(name) for name in names) if info]

    def network_names(self):
        """The host's network devices: what a container's interfaces are linked to."""
        return sorted(os.listdir("/sys/class/net"))

    def _criu(self, argv, what, images, options, restore):
        """lxc-checkpoint with a CRIU configuration of this call's; returns CRIU's statistics."""
        action = "restore" if restore else "dump"
        work = tempfile.mkdtemp(prefix=".work-", dir=os.path.dirname(images))
        try:
            config = os.path.join(work, "criu.conf")
            with open(config, "w", encoding="utf-8") as handle:
                handle.write(criu_config(work, options, restore))
            environ = {"CRIU_CONFIG_FILE": config}
            if restore:
                ip = os.path.join(work, "ip")
                with open(os.open(ip, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700), "w", encoding="utf-8") as handle:
                    handle.write(IP_LOCK_FIRST.format(python=sys.executable))
                if os.access(ip, os.X_OK):
                    environ["CR_IP_TOOL"] = ip
                else:  # a restore without it may reset a connection; one that fails may lose the container
                    self.module.warn("%s is mounted noexec, so CRIU restores the container's addresses before it locks its "
                                     "connections: a client may see its connection reset" % os.path.dirname(images))
            try:
                self._run(argv, what, environ)
            except EngineError as exc:
                # LXC has CRIU log into the images directory, whatever the work directory.
                raise EngineError(str(exc), (exc.detail + "\n" + log_tail(images, action + ".log")).strip()) from exc
            return criu_stats(work, "stats-" + action) or criu_stats(images, "stats-" + action)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def checkpoint(self, container, bundle_dir, options, handover=None):
        info = self.describe(container)
        if not info:
            raise EngineError("no lxc container %s" % container)
        if info["state"] != "running":
            raise EngineError("container %s is %s, not running" % (container, info["state"]))
        if info["cannot_move"]:
            raise EngineError("container %s cannot move: %s" % (container, "; ".join(info["cannot_move"])))
        stop = not options.get("leave_running")
        stats = self._criu(checkpoint_args(container, bundle_dir, stop), "lxc-checkpoint", bundle_dir, options, restore=False)
        if options.get("files_shared"):
            return {"container": info, "stats": stats}  # the target sees these very files
        work = tempfile.mkdtemp(prefix=".work-", dir=os.path.dirname(bundle_dir))
        try:
            # Taken with the container stopped: its files are the ones its memory was dumped with. After
            # files sent ahead, only what changed since (tar updates the snapshot file: a copy of it).
            incremental = []
            if options.get("parent"):
                snapshot = os.path.join(work, SNAPSHOT)
                shutil.copyfile(os.path.join(_bundle.final_path(os.path.dirname(bundle_dir), options["parent"]), SNAPSHOT), snapshot)
                incremental = ["--listed-incremental", snapshot]
            self._archive(container, bundle_dir, incremental)
        except (EngineError, OSError) as exc:
            if not stop:
                raise
            # Without a bundle no rollback will come: the container runs again now from its images.
            try:
                self.resume(bundle_dir, {"container": info}, options)
                note = "%s runs again from its checkpoint" % container
            except EngineError as again:
                note = "and resuming %s failed too: %s" % (container, again)
            raise EngineError("%s (%s)" % (exc, note), getattr(exc, "detail", "")) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {"container": info, "stats": stats}

    def _archive(self, container: str, bundle_dir: str, incremental: list[str], live: bool = False) -> None:
        # A running container changes files while tar reads them (tar's exit status 1): what they
        # became is in the archive taken in the freeze.
        self._run(TAR + ["--create", "--file", os.path.join(bundle_dir, ARCHIVE)] + incremental + ["--directory", self.lxcpath, container]
                  + (["--warning=no-file-changed", "--warning=no-file-removed"] if live else []),
                  "tar (the container's directory)", ok=(0, 1) if live else (0,))

    def files_ahead(self, container, bundle_dir):
        info = self.describe(container)
        if not info or info["cannot_move"]:
            return None  # the checkpoint says why
        self._archive(container, bundle_dir, ["--listed-incremental", os.path.join(bundle_dir, SNAPSHOT)], live=True)
        return {"container": info}

    def restore(self, bundle_dir, manifest, options):
        name = manifest["container"]["name"]
        directory = self._directory(name)
        if options.get("files_shared"):
            # No file is copied, so none is removed if the restore fails: they are the source's too.
            try:
                here = files_id(directory)
            except OSError:
                here = "missing"
            if here != manifest["container"]["files_id"]:
                raise EngineError("files_shared: this host does not see %s's files as the source did (%s is %s, %s there)"
                                  % (name, directory, here, manifest["container"]["files_id"]))
            return self.resume(bundle_dir, manifest, options)
        if os.path.lexists(directory):
            raise EngineError("an lxc container %s is already here (%s)" % (name, directory))
        # The files sent ahead first, then what changed in them (an incremental extract also deletes).
        parents = [_bundle.final_path(os.path.dirname(bundle_dir), manifest["parent"]["id"])] if manifest.get("parent") else []
        try:
            for each in parents + [bundle_dir]:
                self._run(TAR + ["--extract", "--listed-incremental", "/dev/null", "--file", os.path.join(each, ARCHIVE),
                                 "--directory", self.lxcpath], "tar (unpacking the container's directory)")
            return self.resume(bundle_dir, manifest, options)
        except EngineError:
            shutil.rmtree(directory, ignore_errors=True)  # nothing of it is left here
            raise

    def resume(self, bundle_dir, manifest, options):
        name = manifest["container"]["name"]
        stats = self._criu(restore_args(name, bundle_dir), "lxc-checkpoint --restore", bundle_dir, options, restore=True)
        return {"stats": stats, "container": self.describe(name)}

    def running(self, manifest):
        return self._state(manifest["container"]["name"])[0] == "running"

    def exists(self, manifest):
        name = manifest["container"]["name"]
        if (manifest.get("options") or {}).get("files_shared"):
            return self._state(name)[0] != "stopped"  # the files are every host's: only a running copy is this host's
        return os.path.isfile(os.path.join(self._directory(name), "config"))

    def remove(self, manifest):
        name = manifest["container"]["name"]
        if not self.exists(manifest):
            return False
        if self._state(name)[0] != "stopped":
            self._run(["lxc-stop", "--name", name, "--kill"], "lxc-stop")
        if not (manifest.get("options") or {}).get("files_shared"):
            self._run(["lxc-destroy", "--name", name], "lxc-destroy")
        return True
