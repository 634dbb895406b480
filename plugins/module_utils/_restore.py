# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A checkpoint restored on its target, or resumed on its source, as the restore module does it.

1. wait (optional): the source delivers the bundle itself; ``state=absent`` for the same checkpoint,
   or its page link failing, ends the wait. The source's receiver stays until the restore is over.
   Given its engine, a restore that waits first asks this host what the bundle does not decide (CRIU's
   version, the engine's images and networks: ``Engine.prepare``), so the container, down once the
   bundle is on its way, does not wait for those answers.
2. verify: the manifest and every file's checksum (and those of the pre-copy iterations it stands
   on, each pinned by its child), the engine it names, a CRIU here no older than
   the one that took it, and the CPU (CRIU's cpuinfo check); a resume on the source skips the last two.
3. restore (or resume), unless the container already runs from it (a bundle that arrived during
   this wait cannot have been restored yet), behind a hold on its TCP where
   it has an address on a macvlan or ipvlan network (``_address.IngressHold``).
``state=absent`` removes what a restore of the checkpoint left here (the rollback of a target), a
hold a killed restore left included.
"""

from __future__ import annotations

import contextlib
import os
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _address, _bundle, _criu, _engine, _engines, _pagelink, _wire


class Failed(Exception):
    """A step failed; ``phase`` (verify, restore, resume, remove) and ``extra`` go into the result."""

    def __init__(self, message: str, phase: str, **extra: t.Any):
        super().__init__(message)
        self.phase, self.extra = phase, extra


class Restore:
    """The restore of ``params["checkpoint_id"]``; ``engine_for(name)`` makes the engine the bundle names."""

    def __init__(self, params: dict[str, t.Any], engine_for: t.Callable[[str], _engine.Engine]):
        self.params, self._engine_for, self._engines = params, engine_for, {}
        self.checkpoint_id = _bundle.check_id(params["checkpoint_id"])
        self.images_dir = params["images_dir"]
        self.path = _bundle.final_path(self.images_dir, self.checkpoint_id)
        self.chain: list[dict[str, t.Any]] = []

    def engine_for(self, name: str) -> _engine.Engine:
        """The engine ``name``, made once per run: a prepared one keeps what it asked."""
        if name not in self._engines:
            self._engines[name] = self._engine_for(name)
        return self._engines[name]

    def remove(self, check_mode: bool) -> dict[str, t.Any]:
        marker = _wire.wait_marker(self.images_dir, self.checkpoint_id)
        waiting = os.path.exists(marker)
        if waiting and not check_mode:
            os.unlink(marker)  # a restore waiting for it gives up
        try:
            manifest = _bundle.load_manifest(self.path)
        except _bundle.BundleError:
            return {"changed": waiting, "msg": "no checkpoint %s here, so no container of it" % self.checkpoint_id}
        engine = self.engine_for(manifest["engine"])
        present = engine.exists(manifest)
        released = False
        if not check_mode:
            try:
                if present:
                    engine.remove(manifest)
                released = release_hold(engine, manifest, self.checkpoint_id)
            except (_engine.EngineError, _address.AddressError, OSError) as exc:
                raise Failed("remove failed: %s" % exc, "remove", detail=getattr(exc, "detail", "")) from exc
        return {"changed": bool(present or released)}

    @contextlib.contextmanager
    def delivered(self, seconds: int, meanwhile: t.Callable[[], None]) -> t.Iterator[bool]:
        """Until the source has delivered the bundle, or ``seconds`` have passed, ``meanwhile()`` run
        first; the marker that says a restore waits stays until the restore is over, and the source's
        receiver stays as long. Yields whether the bundle arrived during the wait (it was not here when
        the wait began)."""
        manifest = os.path.join(self.path, _bundle.MANIFEST)
        marker = _wire.wait_marker(self.images_dir, self.checkpoint_id)
        with open(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="ascii") as handle:
            handle.write("%d\n" % os.getpid())
        deadline = time.monotonic() + seconds
        arrived = not os.path.exists(manifest)
        try:
            meanwhile()
            while not os.path.exists(manifest):
                if not os.path.exists(marker):
                    raise Failed("checkpoint %s: the wait for it was cancelled" % self.checkpoint_id, "verify")
                link = _pagelink.read_state(self.images_dir, self.checkpoint_id)
                if link is not None and (link.get("state") == "failed"
                                         or link.get("state") == "running" and not _wire.alive(link.get("pid"))):
                    raise Failed("checkpoint %s: its page link is %s, so no bundle will come"
                                 % (self.checkpoint_id, link.get("error") or link.get("state")), "verify")
                if time.monotonic() > deadline:
                    raise Failed("checkpoint %s did not arrive within %d s" % (self.checkpoint_id, seconds), "verify")
                time.sleep(0.01)
            yield arrived
        finally:
            if os.path.exists(marker):
                os.unlink(marker)

    def verified(self) -> tuple[dict[str, t.Any], _engine.Engine]:
        """The bundle's manifest and its engine, once everything about it checks out, the bundles of
        its pre-copy iterations included (``self.chain``)."""
        try:
            manifest = _bundle.verified(self.path)
            self.chain = [manifest] + _bundle.verified_chain(self.images_dir, manifest)
        except _bundle.BundleError as exc:
            raise Failed(str(exc), "verify", problems=exc.problems) from None
        wanted = self.params["engine"]
        if wanted and wanted != manifest["engine"]:
            raise Failed("engine: the checkpoint was taken with engine %s, not %s" % (manifest["engine"], wanted), "verify")
        return manifest, self.engine_for(manifest["engine"])

    def check_host(self, engine: _engine.Engine, manifest: dict[str, t.Any]) -> None:
        """This host can run what the checkpoint holds (a restore elsewhere; a resume is at home)."""
        try:
            mine, theirs = engine.criu.version(), _criu.parse_version(manifest.get("criu_version") or "")
            if theirs and mine and mine[:2] < theirs[:2]:
                raise Failed("CRIU %s here is older than CRIU %s that took the checkpoint"
                             % (_criu.version_string(mine), manifest["criu_version"]), "verify")
            if self.params["cpu_check"] and not engine.criu.cpuinfo_check(self.path):
                raise Failed("this host's CPU cannot run processes checkpointed on %s (CRIU cpuinfo check)"
                             % manifest.get("source_host"), "verify")
        except _criu.CriuError as exc:
            raise Failed(str(exc), "verify") from None

    def run(self, check_mode: bool) -> dict[str, t.Any]:
        if self.params["wait"] <= 0 or check_mode:
            return self.restore(check_mode)
        with self.delivered(self.params["wait"], self.prepare) as arrived:
            return self.restore(check_mode, arrived)

    def prepare(self) -> None:
        """Given the engine, what the restore will ask this host that the bundle does not decide."""
        if not self.params["engine"]:
            return
        try:
            engine = self.engine_for(self.params["engine"])
            engine.criu.version()
            engine.prepare()
        except (_engine.EngineError, _criu.CriuError) as exc:
            raise Failed("asking this host ahead of the bundle failed: %s" % exc, "verify", detail=getattr(exc, "detail", "")) from exc

    def restore(self, check_mode: bool, arrived: bool = False) -> dict[str, t.Any]:
        """``arrived``: the bundle came while this run waited, so nothing has restored from it yet."""
        manifest, engine = self.verified()
        if not arrived and engine.running(manifest):
            return {"changed": False, "container": engine.describe(manifest["container"]["id"])}
        resume = self.params["resume"]
        if not resume:
            self.check_host(engine, manifest)
        if check_mode:
            return {"changed": True}
        phase = "resume" if resume else "restore"
        started = time.monotonic()
        try:
            _bundle.link_chain(self.images_dir, self.chain)  # CRIU finds the earlier iterations' pages through them
            hold = ingress_hold(engine, manifest, self.checkpoint_id)
            with hold.holding() if hold else contextlib.nullcontext():
                result = (engine.resume if resume else engine.restore)(self.path, manifest, manifest.get("options") or {})
        except (_engine.EngineError, _criu.CriuError, _bundle.BundleError, _address.AddressError, OSError) as exc:
            raise Failed("%s failed: %s" % (phase, exc), phase, detail=getattr(exc, "detail", "") or getattr(exc, "log", "")) from exc
        running_at = _engine.now()
        # Here or back at home, the switches must learn where the container's MAC is now.
        announced = _address.announce_namespace((result.get("container") or {}).get("pid"))
        return dict(result, changed=True, announced=announced, held=hold.devices if hold else [], running_at=running_at,
                    seconds=round(time.monotonic() - started, 3))


def ingress_hold(engine: _engine.Engine, manifest: dict[str, t.Any], checkpoint_id: str) -> _address.IngressHold | None:
    """The hold over the checkpoint's container's TCP on this host (``_address.IngressHold``); None when
    it has no address on a network with a parent device here, or (with a warning) when this host has no nft."""
    container = manifest["container"]
    devices = engine.parent_devices(container.get("networks") or []) if container.get("addresses") else []
    if not devices:
        return None
    nft = engine.module.get_bin_path("nft")
    if not nft:
        engine.module.warn("nft is not on this host (package nftables; role ferry.migrate.criu_host installs it): a client's "
                           "connection to %s may be reset while it is restored" % ", ".join(container["addresses"]))
        return None
    return _address.IngressHold(engine.module.run_command, nft, checkpoint_id, devices, container["addresses"])


def release_hold(engine: _engine.Engine, manifest: dict[str, t.Any], checkpoint_id: str) -> bool:
    """Remove the hold a killed restore of the checkpoint left here; True when there was one. Found by
    the checkpoint alone: the container's networks may be gone from this host by now."""
    container = manifest["container"]
    nft = engine.module.get_bin_path("nft") if container.get("addresses") and container.get("networks") else None
    return bool(nft) and _address.IngressHold(engine.module.run_command, nft, checkpoint_id, [], []).release()


def run(module: t.Any) -> None:
    params = module.params
    _engine.check_checkpoint_id(module, params["checkpoint_id"])
    restore = Restore(params, lambda name: _engines.engine_for(module, name))
    try:
        module.exit_json(**(restore.remove(module.check_mode) if params["state"] == "absent" else restore.run(module.check_mode)))
    except Failed as exc:
        module.fail_json(msg=str(exc), phase=exc.phase, **exc.extra)
