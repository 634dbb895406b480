# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's checkpoint on its source host, as the checkpoint module takes it.

1. A verified bundle of a container that no longer runs is the checkpoint already taken.
2. The target's receiver is reached before the freeze, so its start-up is not downtime (``send``).
   Pre-copy: the engine pre-dumps the running container into bundles of their own, each sent to the
   target at once, until the stop rules (``pre_copy_stop``) end the iterations.
3. The engine dumps into a private partial directory; from then on the container may be stopped.
4. The bundle is finalised (manifest, checksums, its final name); with ``send``, it is first
   delivered from here, hashed as it goes, so it is read once. Post-copy delivers it from inside the dump (the engine's ``handover``), before the lazy pages
   move, so the target restores while they do. The files an engine writes front to back (its
   ``streams``: podman's export) go while the dump writes them, from pipes in their place (``_Stream``).
5. Whatever fails: the receiver's session ends, a container stopped for nothing runs again here, and
   the partial directory goes (with the pre-copy iterations here). The error says which of these
   happened.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _criu, _engine, _engines, _transport

# The options a manifest records, which its restore (and a resume here) reads back.
RECORDED = ("leave_running", "tcp_established", "file_locks", "compress", "include_image", "method", "files_shared")
# When pre-copy stops iterating (the checkpoint module's option pre_copy).
PRE_COPY_SPEC = dict(
    max_iterations=dict(type="int", default=8),
    converged_bytes=dict(type="int", default=8 << 20),
    unconverged=dict(type="str", choices=["finish", "abort"], default="finish"),
)
# An iteration that writes more than this share of the one before it made no progress (P.Haul's rule).
PROGRESS = 0.9


def _mib(size: int) -> str:
    return "%.2f MiB" % (size / 1048576.0)


def pre_copy_stop(written: list[int], rules: dict[str, t.Any]) -> tuple[str, str] | None:
    """Whether pre-copy stops after iterations that wrote ``written`` bytes of pages, oldest first:
    None to iterate again, else (``converged``, ``no_progress`` or ``max_iterations``, why). Only a
    converged pre-copy leaves little for the final dump; the others stop because iterating more would
    not help (the container dirties memory as fast as it is sent) or has gone on long enough."""
    last = written[-1]
    if last <= rules["converged_bytes"]:
        return "converged", "iteration %d wrote %s, at most converged_bytes (%s)" % (len(written), _mib(last), _mib(rules["converged_bytes"]))
    if len(written) > 1 and last > PROGRESS * written[-2]:
        return "no_progress", ("iteration %d wrote %s against %s before: the container dirties memory about as fast as "
                               "it is sent" % (len(written), _mib(last), _mib(written[-2])))
    if len(written) >= rules["max_iterations"]:
        return "max_iterations", "%d iteration(s) (max_iterations, or all the engine can stand on) and still %s dirty" % (len(written), _mib(last))
    return None


class Failed(Exception):
    """The checkpoint failed; ``frozen`` says whether the container may have been stopped meanwhile."""

    def __init__(self, message: str, detail: str = "", frozen: bool = False):
        super().__init__(message)
        self.detail = detail
        self.frozen = frozen


def remove(images_dir: str, checkpoint_id: str, check_mode: bool) -> dict[str, t.Any]:
    path = _bundle.final_path(images_dir, checkpoint_id)
    present = bool(_bundle.leftovers(images_dir, checkpoint_id))
    if present and not check_mode:
        _bundle.remove(images_dir, checkpoint_id)
    return {"changed": present, "path": path}


class Checkpoint:
    """One checkpoint of ``params["container"]`` with ``engine``. ``receiver`` is the target's open
    session (or None), which ``deliver`` sends the bundle through."""

    def __init__(self, engine: _engine.Engine, params: dict[str, t.Any], checkpoint_id: str, receiver: t.Any = None,
                 deliver: t.Callable[..., dict[str, t.Any]] = _transport.send_bundle):
        self.engine, self.params, self.checkpoint_id = engine, params, checkpoint_id
        self.container = params["container"]
        self.images_dir = params["images_dir"]
        self.path = _bundle.final_path(self.images_dir, checkpoint_id)
        self.receiver, self._deliver = receiver, deliver
        self.options = {key: params[key] for key in RECORDED}
        self.frozen_at: float | None = None
        self.criu_version = ""
        self.handed_over: dict[str, t.Any] = {}  # post-copy: what the handover did, or why it failed
        self.pre_copied: dict[str, t.Any] = {}  # pre-copy: its iterations, why they stopped, the last one

    def refusal(self) -> str | None:
        """What is wrong with the request, before anything changes; None when nothing is."""
        method, offered = self.params["method"], self.engine.capabilities["methods"]
        if method not in offered:
            return "method: engine %s offers %s only, not %s" % (self.engine.name, ", ".join(offered), method)
        if method != "stop_and_copy" and self.params["leave_running"]:
            return "leave_running: a copy is taken with method stop_and_copy only"
        if self.params["include_image"] and not self.engine.capabilities["carries_image"]:
            return "include_image: engine %s has no image to carry" % self.engine.name
        if self.params["files_shared"] and not self.engine.capabilities["shares_files"]:
            return "files_shared: engine %s keeps no files of a container's own that hosts could share" % self.engine.name
        if method == "pre_copy" or self.params["send"]:
            try:
                _bundle.pre_copy_id(self.checkpoint_id, 9999)
            except _bundle.BundleError:
                return "checkpoint_id: at most 119 characters with method pre_copy or send (what goes ahead is <id>.pre-<n>)"
        return None

    def taken(self) -> dict[str, t.Any] | None:
        """The result of the checkpoint already taken, if this host holds it. A container that runs
        (again) gets a fresh checkpoint: a stale one would lose its state."""
        if not os.path.isdir(self.path):
            return None  # the usual case, known without asking the engine
        info = self.engine.describe(self.container)
        if info and info["state"] == "running":
            return None
        try:
            manifest = _bundle.verified(self.path)
        except _bundle.BundleError:
            return None
        if self.container not in (manifest["container"]["name"], manifest["container"]["id"]):
            return None
        return self._result(manifest, changed=False)

    def take(self) -> dict[str, t.Any]:
        """Checkpoint, finalise and deliver; raises Failed, having undone what it could."""
        partial = _bundle.start(self.images_dir, self.checkpoint_id)
        fields, bundle_dir, frozen, stream = None, partial, False, None
        try:
            self.criu_version = _criu.version_string(self.engine.criu.version())
            self.engine.criu.cpuinfo_dump(partial)  # the target's CPU is checked against this before restore
            if self.params["include_image"]:  # while the container runs: the image is not state
                self.engine.save_image(self.container, partial)
            if self.params["method"] == "pre_copy":
                self._pre_copy()
            elif self.params["send"] and not self.params["files_shared"]:
                self._files_ahead()
            self.frozen_at = _engine.now()
            frozen = not self.params["leave_running"]
            started = time.monotonic()
            handover = self._handover if self.params["method"] == "post_copy" else None
            if self.receiver and self.engine.capabilities["streams"] and not handover:
                stream = _Stream(self._send, self.receiver, partial, self._streamed_header())
            try:
                fields = self._dump(partial, handover)
            finally:
                if stream:
                    stream.written()
            seconds = round(time.monotonic() - started, 3)
            if self.pre_copied:  # the final bundle names the chain it stands on
                fields = dict(fields, parent=self.pre_copied["parent"],
                              pre_copy={key: self.pre_copied[key] for key in ("iterations", "stop", "why")})
            if handover:  # the tree ended with its last page served: the bundle went from inside the dump
                return self._result(self.handed_over["manifest"], seconds=seconds, sent=self.handed_over["sent"],
                                    pages_done_at=_engine.now(), page_link=fields.get("page_link"))
            if stream:
                fields = self._fields(fields)
                sent = stream.finish(lambda: _bundle.header(self.images_dir, self.checkpoint_id, fields))
                manifest = _bundle.finalise(self.images_dir, self.checkpoint_id, fields, sent["sha256"])
            else:
                manifest, sent = self._finalise(fields, until_restored=True)
            bundle_dir = self.path
            return self._result(manifest, seconds=seconds, sent=sent)
        except (_engine.EngineError, _criu.CriuError, _bundle.BundleError, _transport.TransportError, OSError) as exc:
            if stream:
                stream.stop()
            raise self._undo(exc, fields, bundle_dir, partial, frozen) from exc
        except BaseException:
            if stream:  # its thread waits for the closing manifest: the process could not end
                stream.stop()
            raise

    def _streamed_header(self) -> dict[str, t.Any]:
        """What a streaming send announces: the files already written, and the engine's streams, with no size yet."""
        head = _bundle.header(self.images_dir, self.checkpoint_id, {})
        return dict(head, files=[{"name": name, "size": None} for name in self.engine.capabilities["streams"]] + head["files"])

    def _pre_copy(self) -> None:
        """Pre-dump the running container again and again, each iteration a bundle of its own sent to
        the target at once, until pre_copy_stop says enough; the final dump stands on the last one."""
        rules, iterations, parent = dict(self.params["pre_copy"]), [], None
        rules["max_iterations"] = min(rules["max_iterations"], self.engine.capabilities["pre_dumps"] or rules["max_iterations"])
        while True:
            bundle_id = _bundle.pre_copy_id(self.checkpoint_id, len(iterations) + 1)
            partial = _bundle.start(self.images_dir, bundle_id)
            started = time.monotonic()
            fields = self.engine.pre_dump(self.container, partial, parent and parent["id"])
            dumped = time.monotonic()
            manifest, sent = self._finalise(dict(fields, parent=parent), bundle_id, _receiver(self.params["send"]))
            iterations.append(_iteration(len(iterations) + 1, fields, manifest, dumped - started, sent))
            parent = _bundle.parent_of(manifest)
            stop = pre_copy_stop([each["pages_written"] * os.sysconf("SC_PAGE_SIZE") for each in iterations], rules)
            if stop:
                break
        self.pre_copied = {"iterations": iterations, "stop": stop[0], "why": stop[1], "parent": parent}
        if stop[0] != "converged" and rules["unconverged"] == "abort":
            raise _engine.EngineError("pre-copy stopped without converging: %s (pre_copy.unconverged is abort); %s runs on here"
                                      % (stop[1], self.container))

    def _files_ahead(self) -> None:
        """The container's files that can go before the freeze (see Engine.files_ahead), sent to the
        target as an iteration of their own while it runs: the freeze then carries only what changed."""
        bundle_id = _bundle.pre_copy_id(self.checkpoint_id, 1)
        partial = _bundle.start(self.images_dir, bundle_id)
        started = time.monotonic()
        fields = self.engine.files_ahead(self.container, partial)
        if fields is None:
            _bundle.remove_tree(partial)
            return
        written = time.monotonic()
        manifest, sent = self._finalise(dict(fields, parent=None), bundle_id, _receiver(self.params["send"]))
        self.pre_copied = {"iterations": [_iteration(1, fields, manifest, written - started, sent)], "stop": "files_ahead",
                           "parent": _bundle.parent_of(manifest),
                           "why": "the container's files went to the target while it ran; its memory goes in the freeze"}

    def _dump(self, partial: str, handover: t.Callable[[dict[str, t.Any]], bool] | None) -> dict[str, t.Any]:
        link = self.params["page_link"]
        options = dict(self.options, page_link=dict(link, checkpoint_id=self.checkpoint_id) if link else None)
        if self.pre_copied:
            options["parent"] = self.pre_copied["parent"]["id"]
        try:
            return self.engine.checkpoint(self.container, partial, options, handover=handover)
        except _engine.EngineError as exc:
            if self.handed_over.get("error"):
                raise _engine.EngineError("%s; %s runs on here" % (self.handed_over["error"], self.container), exc.detail) from exc
            if self.handed_over.get("manifest"):
                raise _engine.EngineError(
                    "post-copy failed after the target started: %s. The target's copy was stopped and %s resumed here "
                    "from its frozen state; what it did on the target since %s is lost" % (exc, self.container, self.frozen_at),
                    exc.detail) from exc
            raise

    def _handover(self, fields: dict[str, t.Any]) -> bool:
        """Post-copy: the tree is frozen and every image but its lazy pages written; deliver them now.
        False tells the engine to resume the tree here."""
        try:  # not until restored: the restore needs the pages this dump serves only once handed over
            self.handed_over["manifest"], self.handed_over["sent"] = self._finalise(fields)
        except (_transport.TransportError, _bundle.BundleError, OSError) as exc:
            self.handed_over["error"] = str(exc)
            return False
        return True

    def _finalise(self, fields: dict[str, t.Any], bundle_id: str | None = None, receiver: t.Any = None,
                  until_restored: bool = False) -> tuple[dict[str, t.Any], dict[str, t.Any] | None]:
        """The bundle's manifest, written, and what sending it did (None without a receiver). A bundle
        for a receiver is sent first, as CRIU wrote it, and hashed on the way: it is read once. The
        checkpoint's own bundle unless ``bundle_id`` (a pre-copy iteration, with a receiver of its own);
        ``until_restored``: it returns once the target's restore of it is over."""
        bundle_id, receiver = bundle_id or self.checkpoint_id, receiver or self.receiver
        fields = self._fields(fields)
        if not receiver:
            return _bundle.finalise(self.images_dir, bundle_id, fields), None
        sent = self._send(receiver, _bundle.header(self.images_dir, bundle_id, fields), until_restored=until_restored)
        return _bundle.finalise(self.images_dir, bundle_id, fields, sent["sha256"]), sent

    def _fields(self, fields: dict[str, t.Any]) -> dict[str, t.Any]:
        """A manifest's fields: the engine's, and what the checkpoint adds."""
        return dict(
            fields,
            engine=self.engine.name,
            criu_version=self.criu_version,
            source_host=socket.gethostname(),
            options=self.options,
            frozen_at=None if self.params["leave_running"] else self.frozen_at,
            checkpointed_at=_engine.now(),
        )

    def _send(self, receiver: t.Any, manifest: dict[str, t.Any], **options: t.Any) -> dict[str, t.Any]:
        try:
            return self._deliver(receiver, _bundle.partial_path(self.images_dir, manifest["id"]), manifest, **options)
        except _transport.TransportError as exc:
            raise _transport.TransportError("sending the checkpoint to %s failed: %s" % (self.params["send"]["target"], exc)) from exc

    def _undo(self, exc: Exception, fields: dict[str, t.Any] | None, bundle_dir: str, partial: str, frozen: bool) -> Failed:
        if self.receiver:
            self.receiver.kill()  # the target's receiver sees the session end; the one-time key leaves this host
        resumed = ""
        if fields is not None and not self.params["leave_running"]:
            # Stopped, but no rollback will come for a checkpoint that failed: it runs again here, now.
            try:
                self.engine.resume(bundle_dir, dict(fields, id=self.checkpoint_id, options=self.options), self.options)
                resumed = " (%s runs again from its checkpoint)" % self.container
            except (_engine.EngineError, _criu.CriuError, OSError) as again:
                resumed = " (and resuming %s failed too: %s)" % (self.container, again)
        _bundle.remove_tree(partial)
        for each in _bundle.pre_copy_ids(self.images_dir, self.checkpoint_id):
            _bundle.remove(self.images_dir, each)
        return Failed("%s%s" % (exc, resumed), getattr(exc, "detail", "") or getattr(exc, "log", ""), frozen)

    def _result(self, manifest: dict[str, t.Any], changed: bool = True, **more: t.Any) -> dict[str, t.Any]:
        # The pre-copy iterations' bytes count too: they went to the target as well.
        pre_copied = sum(each["bytes"] for each in (manifest.get("pre_copy") or {}).get("iterations", []))
        return dict(more, changed=changed, path=self.path, manifest=manifest, bytes=_bundle.total_bytes(manifest) + pre_copied)


class _Stream:
    """A bundle sent while the engine's dump writes it. Each of the engine's ``streams`` is a pipe in the
    partial bundle, in place of its file, which the sending thread reads as the engine fills it and
    keeps beside (_wire.kept_chunks); the other files and the closing manifest go once the dump is done.
    Both ends of each pipe are opened here, before the dump: whenever the sending thread gets to it,
    nothing the engine wrote is lost, and it sees the pipe's end only once the dump is over."""

    def __init__(self, send: t.Callable[..., dict[str, t.Any]], receiver: t.Any, partial: str, head: dict[str, t.Any]):
        self.receiver, self._held, self._pipes = receiver, [], {}
        for entry in head["files"]:
            if entry["size"] is None:
                path = os.path.join(partial, entry["name"])
                os.mkfifo(path, 0o600)
                self._pipes[entry["name"]] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # no writer yet: it would wait
                self._held.append(os.open(path, os.O_WRONLY))
                os.set_blocking(self._pipes[entry["name"]], True)
        self._all_sent, self._asked, self._closing = False, threading.Event(), Future()
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._sending = self._pool.submit(self._send, send, receiver, head)

    def _send(self, send: t.Callable[..., dict[str, t.Any]], receiver: t.Any, head: dict[str, t.Any]) -> dict[str, t.Any]:
        try:
            return send(receiver, head, pipes=self._pipes, final=self._final, until_restored=True)
        finally:
            # A sender that stopped early leaves the engine writing into a full pipe it holds open itself
            # (podman opens it read-write): what is left is read and dropped, so the dump can end.
            for fd in self._pipes.values():
                while os.read(fd, 1 << 20):
                    pass
            self._asked.set()  # a sender that failed asks for nothing more: finish must not wait

    def _final(self) -> dict[str, t.Any]:
        self._all_sent = True
        self._asked.set()
        return self._closing.result()

    def written(self) -> None:
        """The dump is over: once its writer has closed them too, the pipes end."""
        while self._held:
            os.close(self._held.pop())

    def finish(self, closing: t.Callable[[], dict[str, t.Any]]) -> dict[str, t.Any]:
        """Once every file has gone, the closing manifest (``closing()``) goes too; returns what sending did."""
        self._asked.wait()
        if self._all_sent:
            try:
                self._closing.set_result(closing())
            except BaseException as exc:
                self._closing.set_exception(exc)
                raise
        try:
            return self._sending.result()
        finally:
            self._close()

    def stop(self) -> None:
        """Something failed: the session ends, and the sending thread with it, before anything is cleaned."""
        self.written()
        self.receiver.kill()
        if not self._closing.done():
            self._closing.set_exception(_transport.TransportError("the checkpoint failed"))
        self._close()

    def _close(self) -> None:
        self._pool.shutdown(wait=True)
        while self._pipes:
            os.close(self._pipes.popitem()[1])


def _iteration(number: int, fields: dict[str, t.Any], manifest: dict[str, t.Any], seconds: float,
               sent: dict[str, t.Any]) -> dict[str, t.Any]:
    """The record of one bundle sent ahead of the freeze (a pre-copy iteration, or files)."""
    stats = fields.get("stats") or {}
    return {
        "iteration": number,
        "pages_written": stats.get("pages_written", 0),
        "pages_skipped_parent": stats.get("pages_skipped_parent", 0),
        "bytes": _bundle.total_bytes(manifest),
        "frozen_seconds": round(stats.get("frozen_time", 0) / 1e6, 3),
        "dump_seconds": round(seconds, 3),
        "send_seconds": sent["seconds"],
    }


def _receiver(send: dict[str, t.Any]) -> _transport.Channel:
    """The SSH session to the target's receiver, up before the container freezes."""
    channel = _transport.Channel(send["target"], send["port"], send["user"], "ferry-receive", send["timeout"],
                                 private_key=send["private_key"], host_keys=send["host_keys"])
    channel.ready()
    return channel


def run(module: t.Any) -> None:
    """The checkpoint module: its parameters checked, then the steps above, then its result."""
    params = module.params
    _engine.check_container(module, "container")
    checkpoint_id = params["container"] if params["checkpoint_id"] is None else params["checkpoint_id"]
    _engine.check_checkpoint_id(module, checkpoint_id)
    if params["state"] == "absent":
        module.exit_json(**remove(params["images_dir"], checkpoint_id, module.check_mode))
    checkpoint = Checkpoint(_engines.engine_for(module), params, checkpoint_id)
    refusal = checkpoint.refusal()
    if refusal:
        module.fail_json(msg=refusal)
    taken = checkpoint.taken()
    if taken:
        module.exit_json(**taken)
    if module.check_mode:
        module.exit_json(changed=True, path=checkpoint.path)
    if params["send"]:
        try:
            checkpoint.receiver = _receiver(params["send"])
        except (_transport.TransportError, OSError) as exc:
            module.fail_json(msg="send: %s" % exc, phase="checkpoint")
    try:
        module.exit_json(**checkpoint.take())
    except Failed as exc:
        _engine.fail(module, "checkpoint", exc, frozen=exc.frozen)
