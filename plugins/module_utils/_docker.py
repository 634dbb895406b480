# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docker engine: Docker's experimental checkpoints (runc and CRIU underneath), moved between hosts.

Docker can checkpoint a container and start it again from a checkpoint, but only on the host that
holds it, and its restore from a custom ``--checkpoint-dir`` is broken upstream. So the source's
checkpoint directory travels in the bundle with the container's file changes (overlay2's upper
directory) and its ``docker inspect``; the target re-creates the container from that whole inspect
(Config, HostConfig, its networks) through the Docker Engine API, so no setting is lost in a
translation to command-line flags, puts both back where Docker looks for them and starts it from the
checkpoint. What cannot exist on another host (another container's namespaces or volumes, legacy
links) is refused before the freeze, by name.

Request builders are plain functions, unit-tested without Docker.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import typing as t
import urllib.parse

from ansible_collections.ferry.migrate.plugins.module_utils._engine import (
    EngineError, ImageEngine, bind_sources, criu_stats, restart_policy, tree_cpu, tree_rss)

MIN_API_VERSION = (1, 40)
CHECKPOINT_FILE = "checkpoint.tar"
ROOTFS_FILE = "rootfs-diff.tar"
# The source's `docker inspect`, to re-create the container from. A file of the bundle, not a field of
# its manifest: it holds the environment (secrets often), and modules return the manifest.
INSPECT_FILE = "inspect.json"
# Docker keeps checkpoints per container, so one name serves every migration.
CHECKPOINT_NAME = "ferry"
# Marks the target's re-created container as this checkpoint's, so a rollback removes only that one.
LABEL = "io.ferry.checkpoint"
# Overlay keeps whiteouts and opaque directories as device nodes and trusted.* attributes.
TAR_OPTIONS = ["--numeric-owner", "--xattrs", "--xattrs-include=trusted.*", "--xattrs-include=security.*", "--sparse"]
_COMPRESS = {"none": [], "gzip": ["--gzip"], "zstd": ["--zstd"]}


def api_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in (text or "0").split(".")[:2] if part.isdigit())


def checkpoint_args(container: str, name: str, options: dict[str, t.Any]) -> list[str]:
    # Docker has no flags for CRIU's TCP and lock options: runc takes them from /etc/criu/runc.conf,
    # which role criu_host writes.
    return ["checkpoint", "create"] + (["--leave-running"] if options.get("leave_running") else []) + [container, name]


def cannot_move(inspect: dict[str, t.Any]) -> list[str]:
    """The container's settings that cannot be re-created on another host, each named with why."""
    host = inspect.get("HostConfig") or {}
    problems = []
    for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"):
        value = host.get(key) or ""
        if value.startswith("container:"):
            problems.append("HostConfig.%s=%s joins another container's namespace, which stays on this host" % (key, value))
        elif value == "host" and key in ("PidMode", "IpcMode"):  # the host's cgroup or UTS namespace is fine: CRIU leaves them be
            problems.append("HostConfig.%s=host shares this host's namespace, which CRIU cannot move" % key)
    if host.get("VolumesFrom"):
        problems.append("HostConfig.VolumesFrom=%s mounts other containers' volumes" % ",".join(host["VolumesFrom"]))
    if host.get("Links"):
        problems.append("HostConfig.Links=%s links to other containers (legacy links)" % ",".join(host["Links"]))
    return problems


def create_request(inspect: dict[str, t.Any], checkpoint_id: str) -> tuple[dict[str, t.Any], dict[str, dict[str, t.Any]]]:
    """The Docker Engine API's ``POST /containers/create`` body that re-creates the container
    ``inspect`` describes - its whole Config and HostConfig, by image ID, labelled as this checkpoint's -
    and the endpoints of the networks to connect it to before it starts (the API creates a container
    on one network)."""
    body = dict(inspect.get("Config") or {})
    body["Image"] = inspect["Image"]
    body["Labels"] = dict(body.get("Labels") or {}, **{LABEL: checkpoint_id})
    body["HostConfig"] = dict(inspect.get("HostConfig") or {})
    endpoints = {}
    for network, settings in sorted(((inspect.get("NetworkSettings") or {}).get("Networks") or {}).items()):
        # Docker adds the container's short ID as an alias by itself; that one is not the user's.
        aliases = [alias for alias in settings.get("Aliases") or () if alias != inspect.get("Id", "")[:12]]
        endpoints[network] = {key: value for key, value in (("IPAMConfig", settings.get("IPAMConfig")), ("Aliases", aliases or None),
                                                            ("Links", settings.get("Links")), ("DriverOpts", settings.get("DriverOpts")))
                              if value}
    mode = body["HostConfig"].get("NetworkMode") or "default"
    first = mode if mode in endpoints else "bridge" if mode == "default" and "bridge" in endpoints else None
    body["NetworkingConfig"] = {"EndpointsConfig": {first: endpoints.pop(first)} if first else {}}
    return body, endpoints


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to the Docker daemon's unix socket (the Engine API), with the standard library only."""

    def __init__(self, path: str, timeout: float = 300.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def socket_path(docker_host: str | None) -> str:
    """The daemon's socket, as the docker CLI finds it (DOCKER_HOST, else the default)."""
    if docker_host and docker_host.startswith("unix://"):
        return docker_host[len("unix://"):]
    if docker_host:
        raise EngineError("DOCKER_HOST=%s: the docker engine talks to a local daemon through its unix socket" % docker_host)
    return "/var/run/docker.sock"


def summarise(inspect: dict[str, t.Any]) -> dict[str, t.Any]:
    """The fields of ``docker inspect`` a planner and a manifest need (the same keys as podman's)."""
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    networks = (inspect.get("NetworkSettings") or {}).get("Networks") or {}
    pid = state.get("Pid") or None
    running = state.get("Status") == "running"
    return {
        "engine": "docker",
        "name": (inspect.get("Name") or "").lstrip("/"),
        "id": inspect.get("Id"),
        "image_id": (inspect.get("Image") or "").split(":", 1)[-1],
        "image_name": config.get("Image"),
        "state": state.get("Status"),
        "pid": pid,
        "labels": config.get("Labels") or {},
        "addresses": sorted(net.get("IPAddress") for net in networks.values() if net.get("IPAddress")),
        "networks": sorted(networks),
        "rss_bytes": tree_rss(pid) if running else 0,
        "cpu": tree_cpu(pid) if running else 0.0,
        "checkpointed": False,
        "network_mode": (inspect.get("HostConfig") or {}).get("NetworkMode"),
        "cannot_move": cannot_move(inspect),
        "host_paths": bind_sources(inspect),
    }


def parent_device(network: dict[str, t.Any]) -> str | None:
    """``docker network inspect``: a macvlan or ipvlan network's parent device (none: Docker made a dummy)."""
    return (network.get("Options") or {}).get("parent") if network.get("Driver") in ("macvlan", "ipvlan") else None


class DockerEngine(ImageEngine):
    name = tool = "docker"
    capabilities = {"methods": ["stop_and_copy"], "carries_image": True, "exec": ["docker", "exec", "{id}"], "identity": "container ID",
                    "shares_files": False, "pre_dumps": None, "streams": []}
    summarise = staticmethod(summarise)
    parent_device = staticmethod(parent_device)

    def __init__(self, module, criu):
        super().__init__(module, criu)
        server = self._json(["version", "--format", "{{json .Server}}"], "docker version") or {}
        if api_version(server.get("ApiVersion")) < MIN_API_VERSION:
            module.fail_json(msg="the Docker daemon's API %s is older than %d.%d" % ((server.get("ApiVersion"),) + MIN_API_VERSION))
        info = self._json(["info", "--format", "{{json .}}"], "docker info")
        if not info.get("ExperimentalBuild"):
            module.fail_json(msg="the Docker daemon on this host runs without experimental mode, which checkpoints need "
                                 "(role ferry.migrate.criu_host with criu_host_docker=true enables it)")
        self.root = info["DockerRootDir"]
        self.driver = info.get("Driver")
        self.api_version = server.get("ApiVersion")

    def _api(self, method: str, path: str, body: t.Any = None, query: dict[str, str] | None = None) -> t.Any:
        """One Engine API call (the version the daemon speaks); Docker's own message on failure."""
        url = "/v%s%s%s" % (self.api_version, path, "?" + urllib.parse.urlencode(query) if query else "")
        connection = _UnixHTTPConnection(socket_path(os.environ.get("DOCKER_HOST")))
        try:
            connection.request(method, url, body=json.dumps(body) if body is not None else None,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except OSError as exc:
            raise EngineError("Docker Engine API %s %s: %s" % (method, path, exc)) from exc
        finally:
            connection.close()
        if response.status >= 400:
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise EngineError("Docker Engine API %s %s: %d %s" % (method, path, response.status, message.strip()))
        return json.loads(text) if text.strip() else None

    def _tar(self, args: list[str], what: str) -> None:
        rc, out, err = self.module.run_command(["tar"] + TAR_OPTIONS + args)
        if rc != 0:
            words = (err or out).strip()
            raise EngineError("%s: tar exited with %d: %s" % (what, rc, (words.splitlines() or [""])[0]), words[-2000:])

    def _checkpoint_dir(self, container_id: str) -> str:
        return os.path.join(self.root, "containers", container_id, "checkpoints", CHECKPOINT_NAME)

    def _ours(self, manifest: dict[str, t.Any]) -> dict[str, t.Any] | None:
        """This host's container of the checkpoint: the source's original (same ID) or the one a
        restore created (our label). A stranger with the same name is not ours."""
        found = self._inspect([manifest["container"]["name"]])
        if not found:
            return None
        mine = found[0]
        labels = (mine.get("Config") or {}).get("Labels") or {}
        if mine.get("Id") == manifest["container"]["id"] or labels.get(LABEL) == manifest["id"]:
            return mine
        return None

    def save_image(self, container, bundle_dir):
        info = self.describe(container)
        if not info:
            raise EngineError("no docker container %s" % container)
        # By name when the name still means this image, so the target gets its tag too.
        name = info["image_name"]
        rc, out, _err = self.module.run_command([self.binary, "image", "inspect", "--format", "{{.Id}}", name or ""])
        keep_name = rc == 0 and out.strip().split(":", 1)[-1] == info["image_id"]
        self._run(["save", "-o", os.path.join(bundle_dir, self.IMAGE_FILE), name if keep_name else info["image_id"]], "docker save")

    def checkpoint(self, container, bundle_dir, options, handover=None):
        found = self._inspect([container])
        if not found:
            raise EngineError("no docker container %s" % container)
        inspect = found[0]
        info = summarise(inspect)
        if info["state"] != "running":
            raise EngineError("container %s is %s, not running" % (container, info["state"]))
        if info["cannot_move"]:
            raise EngineError("container %s cannot be re-created on another host: %s" % (container, "; ".join(info["cannot_move"])))
        upper = ((inspect.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
        if not upper:
            raise EngineError("container %s uses storage driver %s; the docker engine carries a container's file "
                              "changes from overlay2's upper directory" % (container, self.driver))
        self.module.run_command([self.binary, "checkpoint", "rm", info["id"], CHECKPOINT_NAME])  # a stale one from an earlier try
        # Docker restarts a container that a checkpoint stopped, as if it had crashed: a second copy
        # beside the one moving. Off for the move; the target gets it back from the inspect, a resume here.
        moving = not options.get("leave_running")
        restart = restart_policy(inspect.get("HostConfig") or {}) if moving else None
        if restart:
            self._run(["update", "--restart=no", info["id"]], "docker update")
        try:
            self._run(checkpoint_args(info["id"], CHECKPOINT_NAME, options), "docker checkpoint create")
        except EngineError:
            self._put_back(info["id"], restart, from_checkpoint=False)
            raise
        source = self._checkpoint_dir(info["id"])
        compress = _COMPRESS[options.get("compress") or "none"]
        try:
            self._tar(compress + ["--create", "--file", os.path.join(bundle_dir, CHECKPOINT_FILE), "--directory", source, "."],
                      "packing the checkpoint")
            self._tar(compress + ["--create", "--file", os.path.join(bundle_dir, ROOTFS_FILE), "--directory", upper, "."],
                      "packing the container's file changes")
            with open(os.open(os.path.join(bundle_dir, INSPECT_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                      encoding="utf-8") as handle:
                json.dump(inspect, handle)
            stats = criu_stats(source, "stats-dump")
        except (EngineError, OSError) as exc:
            # No bundle, so no rollback will come: the stopped container runs again from its checkpoint now.
            self._put_back(info["id"], restart, from_checkpoint=moving)
            raise EngineError("packing the bundle failed (%s runs again from its checkpoint): %s" % (container, exc),
                              getattr(exc, "detail", "")) from exc
        return {"container": info, "stats": stats}

    def restore(self, bundle_dir, manifest, options):
        image_loaded = self.ensure_image(bundle_dir, manifest["container"]["image_id"])
        name = manifest["container"]["name"]
        stale = self._ours(manifest)
        if stale:  # a half-restored container of this checkpoint, from an attempt that failed
            self._run(["rm", "--force", stale["Id"]], "docker rm")
        elif self._inspect([name]):
            raise EngineError("a container named %s already exists on this host" % name)
        with open(os.path.join(bundle_dir, INSPECT_FILE), encoding="utf-8") as handle:
            inspect = json.load(handle)
        body, networks = create_request(inspect, manifest["id"])
        # By name when the name means the same image here, so the container reads as it did on the source.
        named = (inspect.get("Config") or {}).get("Image")
        rc, out, _err = self.module.run_command([self.binary, "image", "inspect", "--format", "{{.Id}}", named or ""])
        if named and rc == 0 and out.strip() == inspect["Image"]:
            body["Image"] = named
        created = self._api("POST", "/containers/create", body, {"name": name})["Id"]
        try:
            for network, endpoint in networks.items():
                self._api("POST", "/networks/%s/connect" % urllib.parse.quote(network, safe=""),
                          {"Container": created, "EndpointConfig": endpoint})
            fresh = self._inspect([created])[0]
            self._tar(["--extract", "--file", os.path.join(bundle_dir, ROOTFS_FILE),
                       "--directory", fresh["GraphDriver"]["Data"]["UpperDir"]], "unpacking the container's file changes")
            self._unpack_checkpoint(bundle_dir, created)
            self._start_from_checkpoint(created, "docker start --checkpoint")
        except (EngineError, OSError, KeyError, IndexError):
            # Nothing half-restored stays behind: the caller's rollback resumes the source.
            self.module.run_command([self.binary, "rm", "--force", created])
            raise
        return {"container": self.describe(created), "image_loaded": image_loaded}

    def resume(self, bundle_dir, manifest, options):
        container_id = manifest["container"]["id"]
        if not os.path.isdir(self._checkpoint_dir(container_id)):
            self._unpack_checkpoint(bundle_dir, container_id)
        with open(os.path.join(bundle_dir, INSPECT_FILE), encoding="utf-8") as handle:
            restart = restart_policy(json.load(handle).get("HostConfig") or {})
        self._put_back(container_id, restart, from_checkpoint=True)
        return {"container": self.describe(container_id)}

    def _put_back(self, container_id: str, restart: str | None, from_checkpoint: bool) -> None:
        """The source container as it was before the move: running from its checkpoint, restart policy back."""
        if from_checkpoint:
            self._start_from_checkpoint(container_id, "docker start --checkpoint (resume)")
        if restart:
            self._run(["update", "--restart=" + restart, container_id], "docker update")

    def _unpack_checkpoint(self, bundle_dir: str, container_id: str) -> None:
        target = self._checkpoint_dir(container_id)
        os.makedirs(target, mode=0o700, exist_ok=True)
        self._tar(["--extract", "--file", os.path.join(bundle_dir, CHECKPOINT_FILE), "--directory", target],
                  "unpacking the checkpoint")

    def _start_from_checkpoint(self, container_id: str, what: str) -> None:
        # Right after a checkpoint, containerd still holds its content, and Docker 20.10's upload of the
        # same checkpoint fails with "already exists" until containerd lets go of it.
        for attempt in range(15):
            try:
                self._run(["start", "--checkpoint", CHECKPOINT_NAME, container_id], what)
                break
            except EngineError as exc:
                if "already exists" not in str(exc) or attempt == 14:
                    raise
                time.sleep(1)
        # The container's copy of the checkpoint holds its memory: it goes once the container runs.
        self.module.run_command([self.binary, "checkpoint", "rm", container_id, CHECKPOINT_NAME])

    def running(self, manifest):
        mine = self._ours(manifest)
        return bool(mine and (mine.get("State") or {}).get("Status") == "running")

    def exists(self, manifest):
        return self._ours(manifest) is not None

    def remove(self, manifest):
        mine = self._ours(manifest)
        if not mine:
            return False
        self._run(["rm", "--force", mine["Id"]], "docker rm")
        return True
