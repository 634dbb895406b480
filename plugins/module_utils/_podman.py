# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The podman engine (runtime runc): podman's own checkpoint/restore with an exported archive.

Argument builders are plain functions, one line per option, so they are unit-tested without podman.
"""

from __future__ import annotations

import json
import os
import re
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _criu
from ansible_collections.ferry.migrate.plugins.module_utils._engines import Engine, EngineError, tree_cpu, tree_rss

MIN_VERSION = (4, 0)
CHECKPOINT_FILE = "checkpoint.tar"
IMAGE_FILE = "image.tar"


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
    return args + [container]


def restore_args(target: str, options: dict[str, t.Any], criu_binary: str, imported: bool) -> list[str]:
    args = ["container", "restore", "--print-stats", "--runtime-flag", "criu=" + criu_binary]
    if options.get("tcp_established"):
        args.append("--tcp-established")
    if options.get("file_locks"):
        args.append("--file-locks")
    if imported:
        return args + ["--import", target]
    return args + ["--keep", target]


def criu_log_errors(text: str) -> str:
    """CRIU's own error lines from the log that runc names in ``text`` ("log file: <path>"): podman
    only relays "criu failed", and the container's copy of the log goes when it is removed."""
    match = re.search(r"log file: (/[^\s\"\\]+\.log)", text)
    if not match:
        return ""
    lines = _criu.log_tail(os.path.dirname(match.group(1)), os.path.basename(match.group(1)), 400).splitlines()
    errors = [line for line in lines if "Error" in line and "rlimit" not in line]
    return "CRIU: %s\n" % "\n".join(errors[-8:]) if errors else ""


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
        "rss_bytes": tree_rss(pid) if state.get("Status") == "running" else 0,
        "cpu": tree_cpu(pid) if state.get("Status") == "running" else 0.0,
        "checkpointed": bool(state.get("Checkpointed")),
        "network_mode": (inspect.get("HostConfig") or {}).get("NetworkMode"),
    }


class PodmanEngine(Engine):
    name = "podman"

    def __init__(self, module, criu):
        super().__init__(module, criu)
        self.binary = module.get_bin_path("podman", required=True)
        version = self._json(["version", "--format", "json"]).get("Client", {}).get("Version", "0")
        parsed = tuple(int(part) for part in version.split("-")[0].split(".")[:2] if part.isdigit())
        if parsed < MIN_VERSION:
            module.fail_json(msg="podman %s is older than %d.%d" % ((version,) + MIN_VERSION))

    def _run(self, args: list[str], what: str) -> str:
        rc, out, err = self.module.run_command([self.binary] + args)
        if rc != 0:
            # CRIU's words last: callers that shorten the detail keep its end.
            raise EngineError("%s: podman exited with %d" % (what, rc), (err or out).strip()[-3000:] + "\n" + criu_log_errors(err or out))
        return out

    def _json(self, args: list[str]) -> t.Any:
        return json.loads(self._run(args, " ".join(args[:2])) or "null")

    def _inspect(self, names: list[str]) -> list[dict[str, t.Any]]:
        if not names:
            return []
        rc, out, _err = self.module.run_command([self.binary, "container", "inspect"] + names)
        return json.loads(out) if rc == 0 and out.strip() else []

    def describe(self, container):
        found = self._inspect([container])
        return summarise(found[0]) if found else None

    def list(self):
        ids = self._run(["ps", "-a", "-q", "--no-trunc"], "podman ps").split()
        return [summarise(item) for item in self._inspect(ids)]

    def image_ids(self) -> list[str]:
        ids = self._run(["images", "-q", "--no-trunc"], "podman images").split()
        return sorted({image.split(":", 1)[-1] for image in ids})

    def image_present(self, image_id: str) -> bool:
        return self.module.run_command([self.binary, "image", "exists", image_id])[0] == 0

    def checkpoint(self, container, bundle_dir, options):
        info = self.describe(container)
        if not info:
            raise EngineError("no podman container %s" % container)
        if info["state"] != "running":
            raise EngineError("container %s is %s, not running" % (container, info["state"]))
        if options.get("include_image"):
            self._run(["image", "save", "--format", "oci-archive", "-o", os.path.join(bundle_dir, IMAGE_FILE),
                       info["image_name"] or info["image_id"]], "podman image save")
        out = self._run(checkpoint_args(info["id"], os.path.join(bundle_dir, CHECKPOINT_FILE), options,
                                        self.criu.binary), "podman container checkpoint")
        return {"container": info, "stats": parse_stats(out)}

    def restore(self, bundle_dir, manifest, options):
        image_id = manifest["container"]["image_id"]
        image_loaded = False
        if not self.image_present(image_id):
            archive = os.path.join(bundle_dir, IMAGE_FILE)
            if not os.path.exists(archive):
                raise EngineError("image %s is not on this host and the checkpoint does not carry it "
                                  "(checkpoint with include_image)" % image_id)
            self._run(["load", "-q", "-i", archive], "podman load")
            if not self.image_present(image_id):
                raise EngineError("loading the checkpoint's image did not give image %s" % image_id)
            image_loaded = True
        out = self._run(restore_args(os.path.join(bundle_dir, CHECKPOINT_FILE), options, self.criu.binary, True),
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
