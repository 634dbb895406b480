# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The podman engine (runtime runc): podman's own checkpoint/restore with an exported archive.

Argument builders are plain functions, one line per option, so they are unit-tested without podman.
"""

from __future__ import annotations

import json
import os
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle
from ansible_collections.ferry.migrate.plugins.module_utils._engine import EngineError, ImageEngine, bind_sources, restart_policy, tree_cpu, tree_rss

MIN_VERSION = (4, 0)
CHECKPOINT_FILE = "checkpoint.tar"


def checkpoint_args(container: str, export: str, options: dict[str, t.Any], criu_binary: str) -> list[str]:
    args = ["container", "checkpoint", "--export", export, "--print-stats",
            "--compress", options.get("compress") or "none",
            "--runtime-flag", "criu=" + criu_binary]
    if options.get("leave_running"):
        args.append("--leave-running")
    else:
        args.append("--keep")  # the source stays restorable in place: that is the rollback
    if options.get("tcp_established"):
        args.append("--tcp-established")
    if options.get("file_locks"):
        args.append("--file-locks")
    if options.get("parent"):  # pre-copy's final dump: only what changed since the pre-checkpoint
        args.append("--with-previous")
    return args + [container]


def pre_checkpoint_args(container: str, export: str, criu_binary: str) -> list[str]:
    """Pre-copy's one pre-dump: the running container's memory, tracked for the final dump from now on."""
    return ["container", "checkpoint", "--pre-checkpoint", "--export", export, "--print-stats", "--compress", "none",
            "--runtime-flag", "criu=" + criu_binary, container]


def restore_args(target: str, options: dict[str, t.Any], criu_binary: str, imported: bool, previous: str | None = None) -> list[str]:
    """``target``: the archive to import, or (a resume) the container whose checkpoint podman kept;
    ``previous``: the pre-checkpoint's archive that an imported final dump stands on."""
    args = ["container", "restore", "--print-stats", "--runtime-flag", "criu=" + criu_binary]
    if options.get("tcp_established"):
        args.append("--tcp-established")
    if options.get("file_locks"):
        args.append("--file-locks")
    if imported:
        return args + (["--import-previous", previous] if previous else []) + ["--import", target]
    return args + ["--keep", target]


def parse_stats(stdout: str) -> dict[str, int]:
    """CRIU statistics from ``--print-stats`` output; empty when podman printed none."""
    try:
        data = json.loads(stdout[stdout.index("{"):])
    except ValueError:
        return {}
    stats = {}
    for key in ("podman_checkpoint_duration", "podman_restore_duration"):
        if key in data:
            stats[key] = data[key]
    for container in data.get("container_statistics") or []:
        for key in ("runtime_checkpoint_duration", "runtime_restore_duration"):
            if key in container:
                stats[key] = container[key]
        stats.update(container.get("criu_statistics") or {})
    return stats


def summarise(inspect: dict[str, t.Any]) -> dict[str, t.Any]:
    """The fields of ``podman container inspect`` a planner and a manifest need."""
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    networks = (inspect.get("NetworkSettings") or {}).get("Networks") or {}
    pid = state.get("Pid") or None
    return {
        "engine": "podman",
        "name": inspect.get("Name"),
        "id": inspect.get("Id"),
        "image_id": inspect.get("Image"),
        "image_name": inspect.get("ImageName"),
        "state": state.get("Status"),
        "pid": pid,
        "labels": config.get("Labels") or {},
        "addresses": sorted(net.get("IPAddress") for net in networks.values() if net.get("IPAddress")),
        "networks": sorted(networks),
        "rss_bytes": tree_rss(pid) if state.get("Status") == "running" else 0,
        "cpu": tree_cpu(pid) if state.get("Status") == "running" else 0.0,
        "checkpointed": bool(state.get("Checkpointed")),
        "network_mode": (inspect.get("HostConfig") or {}).get("NetworkMode"),
        "cannot_move": [],  # podman's own checkpoint archive carries the container's whole configuration
        "host_paths": bind_sources(inspect),
    }


def parent_device(network: dict[str, t.Any]) -> str | None:
    """``podman network inspect``: a macvlan or ipvlan network's parent device."""
    return network.get("network_interface") if network.get("driver") in ("macvlan", "ipvlan") else None


class PodmanEngine(ImageEngine):
    name = tool = "podman"
    # runc's checkpoint has neither a page server nor lazy restore; found on the target by its ID. Podman
    # pre-dumps once (--pre-checkpoint), and the final dump stands on that one only (--with-previous).
    capabilities = {"methods": ["pre_copy", "stop_and_copy"], "carries_image": True, "exec": ["podman", "exec", "{id}"],
                    "identity": "container ID", "shares_files": False, "pre_dumps": 1, "streams": [CHECKPOINT_FILE]}
    summarise = staticmethod(summarise)
    parent_device = staticmethod(parent_device)

    def __init__(self, module, criu):
        super().__init__(module, criu)
        version = self._json(["version", "--format", "json"], "podman version").get("Client", {}).get("Version", "0")
        parsed = tuple(int(part) for part in version.split("-")[0].split(".")[:2] if part.isdigit())
        if parsed < MIN_VERSION:
            module.fail_json(msg="podman %s is older than %d.%d" % ((version,) + MIN_VERSION))

    def checkpoint(self, container, bundle_dir, options, handover=None):
        found = self._inspect([container])
        if not found:
            raise EngineError("no podman container %s" % container)
        info = summarise(found[0])
        if info["state"] != "running":
            raise EngineError("container %s is %s, not running" % (container, info["state"]))
        restart = restart_policy(found[0].get("HostConfig") or {})
        if restart and not options.get("leave_running"):
            # Podman may restart a container its checkpoint stopped, leaving a fresh second copy here,
            # and podman 4 cannot switch the policy off for the move (Docker can; see _docker).
            raise EngineError("container %s has restart policy %s: podman would restart it here once the checkpoint "
                              "stops it; re-create it with --restart=no to move it" % (container, restart.split(":")[0]))
        try:
            out = self._run(checkpoint_args(info["id"], os.path.join(bundle_dir, CHECKPOINT_FILE), options,
                                            self.criu.binary), "podman container checkpoint")
        except EngineError as exc:
            after = self.describe(info["id"])
            if options.get("leave_running") or not after or after["state"] == "running":
                raise
            # The dump stopped it, then writing the archive failed: without a bundle no rollback will
            # come, so it runs again now from the checkpoint podman kept (--keep).
            note = ""
            for _attempt in range(10):  # podman may still hold it as "paused" for a moment
                try:
                    self.resume(bundle_dir, {"container": info}, options)
                    note = "%s runs again from its checkpoint" % container
                    break
                except EngineError as again:
                    note = "and resuming %s failed too: %s" % (container, again)
                    time.sleep(1)
            raise EngineError("%s (%s)" % (exc, note), exc.detail) from exc
        return {"container": info, "stats": parse_stats(out)}

    def save_image(self, container, bundle_dir):
        info = self.describe(container)
        if not info:
            raise EngineError("no podman container %s" % container)
        self._run(["image", "save", "--format", "oci-archive", "-o", os.path.join(bundle_dir, self.IMAGE_FILE),
                   info["image_name"] or info["image_id"]], "podman image save")

    def pre_dump(self, container, bundle_dir, parent):
        if parent:
            raise EngineError("podman pre-dumps a container once (capability pre_dumps)")
        info = self.describe(container)
        if not info or info["state"] != "running":
            raise EngineError("container %s is %s, not running" % (container, info["state"] if info else "missing"))
        out = self._run(pre_checkpoint_args(info["id"], os.path.join(bundle_dir, CHECKPOINT_FILE), self.criu.binary),
                        "podman container checkpoint --pre-checkpoint")
        return {"container": info, "stats": parse_stats(out)}

    def restore(self, bundle_dir, manifest, options):
        image_loaded = self.ensure_image(bundle_dir, manifest["container"]["image_id"])
        # A pre-copy's final dump: its pre-checkpoint is the bundle its verified parent link leads to.
        previous = os.path.join(bundle_dir, _bundle.PARENT, CHECKPOINT_FILE) if manifest.get("parent") else None
        out = self._run(restore_args(os.path.join(bundle_dir, CHECKPOINT_FILE), options, self.criu.binary, True, previous),
                        "podman container restore")
        return {"stats": parse_stats(out), "container": self._after_restore(manifest), "image_loaded": image_loaded}

    def resume(self, bundle_dir, manifest, options):
        out = self._run(restore_args(manifest["container"]["id"], options, self.criu.binary, False),
                        "podman container restore (resume)")
        return {"stats": parse_stats(out), "container": self._after_restore(manifest)}

    def _after_restore(self, manifest):
        info = self.describe(manifest["container"]["id"])
        # Podman 4 restores a --network none container into a fresh namespace whose loopback is down;
        # the container had it up (its listening sockets were bound there), so bring it back.
        if info and info["network_mode"] == "none" and info["pid"]:
            rc, _out, err = self.module.run_command(["nsenter", "-t", str(info["pid"]), "-n", "ip", "link", "set", "lo", "up"])
            if rc != 0:
                raise EngineError("could not bring up the loopback of %s" % info["name"], err)
        return info

    def running(self, manifest):
        info = self.describe(manifest["container"]["id"])
        return bool(info and info["state"] == "running")

    def exists(self, manifest):
        return self.describe(manifest["container"]["id"]) is not None

    def remove(self, manifest):
        if not self.exists(manifest):
            return False
        self._run(["rm", "--force", "--time", "0", manifest["container"]["id"]], "podman rm")
        return True
