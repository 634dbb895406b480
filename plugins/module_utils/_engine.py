# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine interface every container kind implements, and the shared module plumbing.

An engine knows how to describe a container, checkpoint it into a bundle directory, restore it from
one, resume it where it was checkpointed (rollback), and remove what a checkpoint left on a host. It
declares what it can do in ``capabilities``; callers ask that, never the engine's name. The engines
themselves are in the registry, ``_engines``, which imports them (this module imports none).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _criu


class EngineError(Exception):
    """A step failed; ``detail`` carries the tool's own words (stderr, CRIU log tail)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class Engine:
    name = ""
    # What the engine can do, for callers (role YAML reads it from container_info):
    # methods: how its memory can move (ferry.migrate.migration_method);
    # carries_image: a bundle can carry the container's image to a target that lacks it;
    # exec: the argv that runs a command inside a container, the command appended; "{id}" stands for the
    # container's ID (empty: its processes run on the host);
    # identity: what names the container on the target after a restore;
    # shares_files: its containers' files may live on storage hosts share;
    # pre_dumps: the most pre-copy iterations a final dump can stand on (None: no limit);
    # streams: the files its checkpoint writes front to back in one go, which a checkpoint that sends
    # sends from a pipe while they are written.
    capabilities: dict[str, t.Any] = {"methods": ["stop_and_copy"], "carries_image": False, "exec": [], "identity": "",
                                      "shares_files": False, "pre_dumps": None, "streams": []}

    def __init__(self, module: t.Any, criu: _criu.Criu):
        self.module = module
        self.criu = criu

    def describe(self, container: str) -> dict[str, t.Any] | None:
        """What a planner and a manifest need; None when there is no such container."""
        raise NotImplementedError

    def list(self) -> list[dict[str, t.Any]]:
        raise NotImplementedError

    def image_ids(self) -> list[str]:
        """Images present on this host; engines without images have none."""
        return []

    def network_names(self) -> list[str]:
        """Container networks defined on this host; engines without networks have none."""
        return []

    def parent_devices(self, networks: list[str]) -> list[str]:
        """This host's devices that containers of ``networks`` sit on directly (macvlan's and ipvlan's
        parents), where their frames enter the host; engines without such networks have none."""
        return []

    def prepare(self) -> None:
        """Ask this host now what a restore will ask once its bundle is here (the restore calls it while
        the bundle is on its way), so that the answers are at hand when the container is down. What may
        change meanwhile is kept only where a later answer could not differ in a way that matters: an
        image found here, a network's devices. Engines with nothing to ask ahead do nothing."""

    def checkpoint(self, container: str, bundle_dir: str, options: dict[str, t.Any],
                   handover: t.Callable[[dict[str, t.Any]], bool] | None = None) -> dict[str, t.Any]:
        """Write the container's checkpoint files into ``bundle_dir``; return manifest fields.

        ``handover`` (post-copy) is called with the manifest fields once every image but the lazy pages
        is written; it delivers them, and returns False when it could not (the container resumes here).
        """
        raise NotImplementedError

    def pre_dump(self, container: str, bundle_dir: str, parent: str | None) -> dict[str, t.Any]:
        """Pre-copy (an engine offering ``pre_copy``): write the running container's memory into
        ``bundle_dir`` and track what it dirties from now on; with ``parent`` (the previous iteration's
        bundle, a sibling), only what changed since. Returns manifest fields. The final checkpoint then
        gets ``options["parent"]``, the last iteration's bundle."""
        raise NotImplementedError

    def save_image(self, container: str, bundle_dir: str) -> None:
        """(An engine that ``carries_image``) write the running container's image into ``bundle_dir``,
        before the freeze, for a target that lacks it."""
        raise EngineError("engine %s carries no image" % self.name)

    def files_ahead(self, container: str, bundle_dir: str) -> dict[str, t.Any] | None:
        """Files of the running container that can reach the target before the freeze, written into
        ``bundle_dir``, and manifest fields; None when the engine has none to send ahead (its files
        travel with the checkpoint, or stay). The final checkpoint then gets ``options["parent"]``, this
        bundle's ID, and carries only what changed since."""
        return None

    def restore(self, bundle_dir: str, manifest: dict[str, t.Any], options: dict[str, t.Any]) -> dict[str, t.Any]:
        raise NotImplementedError

    def resume(self, bundle_dir: str, manifest: dict[str, t.Any], options: dict[str, t.Any]) -> dict[str, t.Any]:
        """Run the checkpointed container again on the host it was checkpointed on."""
        raise NotImplementedError

    def running(self, manifest: dict[str, t.Any]) -> bool:
        raise NotImplementedError

    def exists(self, manifest: dict[str, t.Any]) -> bool:
        """Something of the checkpoint's container is on this host, running or not."""
        raise NotImplementedError

    def remove(self, manifest: dict[str, t.Any]) -> bool:
        """Stop and remove this host's container of the checkpoint; True when something was removed."""
        raise NotImplementedError


def is_container(inspect: dict[str, t.Any], key: str) -> bool:
    """``key`` is this inspected container's name, or its ID (12 characters or more).

    The engines also take any prefix of an ID, so a container named ``c1`` would otherwise be
    found on a host where another container's ID starts with c1.
    """
    return key == (inspect.get("Name") or "").lstrip("/") or (len(key) >= 12 and (inspect.get("Id") or "").startswith(key))


class ImageEngine(Engine):
    """An engine driven through a container tool's command line (podman, docker): containers with
    images, inspected as JSON. Subclasses set ``tool`` and ``summarise`` (inspect -> summary)."""

    tool = ""
    IMAGE_FILE = "image.tar"  # the image in a bundle, for targets that lack it

    def __init__(self, module: t.Any, criu: _criu.Criu):
        super().__init__(module, criu)
        self.binary = module.get_bin_path(self.tool, required=True)
        self._images_here: set[str] = set()  # what prepare() found
        self._devices: dict[str, list[str]] = {}

    @staticmethod
    def summarise(inspect: dict[str, t.Any]) -> dict[str, t.Any]:
        raise NotImplementedError

    def _run(self, args: list[str], what: str) -> str:
        rc, out, err = self.module.run_command([self.binary] + args)
        if rc != 0:
            words = (err or out).strip()
            # CRIU's words last: callers that shorten the detail keep its end.
            raise EngineError("%s: %s exited with %d: %s" % (what, self.tool, rc, (words.splitlines() or [""])[-1]),
                              words[-3000:] + "\n" + _criu.runc_log_errors(words))
        return out

    def _json(self, args: list[str], what: str) -> t.Any:
        return json.loads(self._run(args, what) or "null")

    def _inspect(self, names: list[str]) -> list[dict[str, t.Any]]:
        if not names:
            return []
        rc, out, _err = self.module.run_command([self.binary, "container", "inspect"] + names)
        found = json.loads(out) if rc == 0 and out.strip() else []
        return [item for item in found if any(is_container(item, key) for key in names)]

    def describe(self, container):
        found = self._inspect([container])
        return self.summarise(found[0]) if found else None

    def list(self):
        ids = self._run(["ps", "-a", "-q", "--no-trunc"], self.tool + " ps").split()
        return [self.summarise(item) for item in self._inspect(ids)]

    def image_ids(self):
        ids = self._run(["images", "-q", "--no-trunc"], self.tool + " images").split()
        return sorted({image.split(":", 1)[-1] for image in ids})

    def network_names(self):
        return sorted(self._run(["network", "ls", "--format", "{{.Name}}"], self.tool + " network ls").split())

    @staticmethod
    def parent_device(network: dict[str, t.Any]) -> str | None:
        """An inspected network's parent device when its containers sit on one (macvlan, ipvlan)."""
        raise NotImplementedError

    def parent_devices(self, networks):
        if all(name in self._devices for name in networks):
            return sorted({device for name in networks for device in self._devices[name]})
        return sorted({device for devices in self._devices_of(networks) for device in devices})

    def _devices_of(self, names: list[str]) -> list[list[str]]:
        """Each network's parent devices, one inspect for all, in the order inspect answers (the order asked)."""
        found = self._json(["network", "inspect"] + list(names), self.tool + " network inspect") if names else []
        return [[device] if device else [] for device in map(self.parent_device, found or [])]

    def image_present(self, image_id: str) -> bool:
        if image_id.split(":", 1)[-1] in self._images_here:
            return True
        return self.module.run_command([self.binary, "image", "inspect", "--format", "{{.Id}}", image_id])[0] == 0

    def prepare(self):
        # An image present now is present at the restore (one removed in between fails the restore, as it
        # would a moment after any check); one absent now is asked again, for it may have been loaded.
        self._images_here = set(self.image_ids())
        names = self.network_names()
        devices = self._devices_of(names)
        if len(devices) == len(names):
            self._devices = dict(zip(names, devices))

    def ensure_image(self, bundle_dir: str, image_id: str) -> bool:
        """The checkpoint's image is here, loaded from the bundle when it was not; True when loaded."""
        if self.image_present(image_id):
            return False
        archive = os.path.join(bundle_dir, self.IMAGE_FILE)
        if not os.path.exists(archive):
            raise EngineError("image %s is not on this host and the checkpoint does not carry it "
                              "(checkpoint with include_image)" % image_id)
        self._run(["load", "-q", "-i", archive], self.tool + " load")
        if not self.image_present(image_id):
            raise EngineError("loading the checkpoint's image did not give image %s" % image_id)
        return True


def bind_sources(inspect: dict[str, t.Any]) -> list[str]:
    """The host paths an inspected container bind-mounts: a target must have them too."""
    return sorted({mount["Source"] for mount in inspect.get("Mounts") or [] if mount.get("Type") == "bind" and mount.get("Source")})


def restart_policy(host_config: dict[str, t.Any]) -> str | None:
    """The ``--restart`` value of a container, None when Docker never restarts it."""
    policy = host_config.get("RestartPolicy") or {}
    if policy.get("Name") in (None, "", "no"):
        return None
    retries = policy.get("MaximumRetryCount") or 0
    return policy["Name"] + (":%d" % retries if policy["Name"] == "on-failure" and retries else "")


def criu_for(module: t.Any) -> _criu.Criu:
    binary = _criu.find_binary(module.params.get("criu_path"))
    if not binary:
        module.fail_json(msg="no CRIU binary found (criu_path=%s); run role ferry.migrate.criu_host"
                         % module.params.get("criu_path"))
    if importlib.util.find_spec("pycriu") is None:  # found without importing it (see _criu.pycriu)
        module.fail_json(msg="pycriu is not importable by this interpreter (%s); run role ferry.migrate.criu_host" % sys.executable)
    return _criu.Criu(binary)


# Podman's own rule for names (IDs are hex, so they match too). Anything else could be read by the
# engine's command line as an option ("-l" is podman's "latest container").
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}\Z")


def check_container(module: t.Any, option: str) -> str | None:
    """The container name in ``option``, failing the module naming it when it is not a plain name."""
    name = module.params.get(option)
    if name is not None and not CONTAINER_NAME.match(name):
        module.fail_json(msg="%s must be a container name or ID of [A-Za-z0-9_.-] starting with a letter or digit, not %r"
                         % (option, name))
    return name


def check_checkpoint_id(module: t.Any, checkpoint_id: str) -> str:
    """``checkpoint_id`` when it names a bundle, else the module fails naming the option."""
    try:
        return _bundle.check_id(checkpoint_id)
    except _bundle.BundleError as exc:
        module.fail_json(msg="checkpoint_id: %s" % exc)
    return checkpoint_id  # not reached


def fail(module: t.Any, phase: str, exc: Exception, **extra: t.Any) -> None:
    """Fail naming the phase and the cause, with the tool's own words when there are some."""
    detail = getattr(exc, "detail", "") or getattr(exc, "log", "")
    module.fail_json(msg="%s failed: %s" % (phase, exc), phase=phase, detail=detail, **extra)


def bundle_manifest(module: t.Any, images_dir: str, checkpoint_id: str) -> tuple[str, dict[str, t.Any]]:
    """The final bundle's path and its manifest after full verification, or a failure naming why."""
    path = _bundle.final_path(images_dir, checkpoint_id)
    try:
        return path, _bundle.verified(path)
    except _bundle.BundleError as exc:
        module.fail_json(msg=str(exc), phase="verify", problems=exc.problems)
    raise AssertionError("unreachable")


def now() -> float:
    return round(time.time(), 3)


def criu_stats(images_dir: str, name: str) -> dict[str, int]:
    """CRIU's own statistics image (``stats-dump`` / ``stats-restore``) as a flat dict of integers."""
    path = os.path.join(images_dir, name)
    if not os.path.exists(path) or _criu.pycriu_error():
        return {}
    with open(path, "rb") as handle:
        entry = _criu.pycriu.images.load(handle)["entries"][0]
    return {key: value for part in entry.values() for key, value in part.items() if isinstance(value, int)}


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir("/proc/%d/task" % current):
                with open("/proc/%d/task/%s/children" % (current, task), encoding="ascii") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return pids


def tree_cpu(pid: int | None) -> float:
    """CPU cores a process tree used on average over each process's lifetime (a cheap load estimate)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime", encoding="ascii") as handle:
        uptime = float(handle.read().split()[0])
    total = 0.0
    for current in tree_pids(pid) if pid else []:
        try:
            with open("/proc/%d/stat" % current, encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 of proc(5): utime and stime are 14 and 15, starttime 22.
        lifetime = uptime - int(fields[19]) / ticks
        if lifetime > 0:
            total += (int(fields[11]) + int(fields[12])) / ticks / lifetime
    return round(total, 3)


def tree_rss(pid: int | None) -> int:
    """Resident memory of a process tree in bytes (what a checkpoint has to carry, roughly)."""
    total = 0
    for current in tree_pids(pid) if pid else []:
        try:
            with open("/proc/%d/status" % current, encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total
