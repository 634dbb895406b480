#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint
short_description: Checkpoint a running container into a private, checksummed bundle
version_added: 0.1.0
description:
  - Checkpoints a container with CRIU into the bundle C(<images_dir>/<checkpoint_id>), a 0700 directory
    whose C(manifest.json) lists every file with its size and SHA-256, the container's configuration,
    its image ID, the CRIU version, a description of the CPU (for the target's compatibility check)
    and CRIU's dump statistics.
  - The bundle is written under a temporary name and renamed only when complete, so a bundle that
    exists is whole.
  - "Engine V(podman): podman's own checkpoint with runtime runc, exported as one archive. Unless
    O(leave_running=true), the container is stopped but stays restorable where it is: that is the
    rollback of a failed migration."
  - "Engine V(docker): Docker's experimental checkpoint (runc underneath). The bundle carries the
    checkpoint, the container's file changes (overlay2's upper directory) and its C(docker inspect),
    from which the target re-creates it. The container is stopped with its checkpoint kept in its
    own checkpoints directory, so it can be resumed in place. Docker has no flags for CRIU's TCP and
    lock options: runc takes them from C(/etc/criu/runc.conf), which role ferry.migrate.criu_host
    writes (established connections included), so O(tcp_established) and O(file_locks) do not apply.
    Volumes and bind mounts are re-attached by name and path on the target, not copied."
  - "Engine V(criu): a process tree in its own pid namespace, found through its pidfile, dumped
    through pycriu's RPC."
  - O(state=absent) removes the bundle.
author: Ferry developers (@ferry-migrate)
options:
  container:
    description: Container name or ID; for engine V(criu), the process tree's name.
    type: str
  checkpoint_id:
    description:
      - Name of the bundle. Letters, digits and C(_.-), starting with a letter or digit.
      - Defaults to O(container).
    type: str
  state:
    description: V(present) checkpoints (unless a verified bundle of that container exists); V(absent) removes the bundle.
    type: str
    choices: [present, absent]
    default: present
  engine:
    description: Container engine.
    type: str
    choices: [podman, docker, criu]
    default: podman
  leave_running:
    description: Keep the container running after the checkpoint (a copy, not a move).
    type: bool
    default: false
  tcp_established:
    description: Checkpoint established TCP connections (they are restored on the target).
    type: bool
    default: false
  file_locks:
    description: Checkpoint file locks.
    type: bool
    default: false
  compress:
    description: Compression of podman's or Docker's checkpoint archives. Transfers can compress on the wire instead.
    type: str
    choices: [none, gzip, zstd]
    default: none
  include_image:
    description: Put the container's image into the bundle (podman, docker), for targets that lack it.
    type: bool
    default: false
  method:
    description:
      - How the memory travels; engine V(criu) only for all but V(stop_and_copy).
      - V(stop_and_copy) dumps everything into the bundle here.
      - V(stream) sends the pages through the page link O(page_link) straight to the target, which
        M(ferry.migrate.page_link) opened; the bundle here holds the rest. The tree stays stopped here,
        whole, until it is removed after the target runs it, or resumed by a rollback.
      - V(post_copy) keeps the pages in the frozen tree and serves them through O(page_link) while the
        target already runs it. As soon as every other image is written, this module sends the bundle
        with O(send) and lets the target restore it; it returns once the last page has been served,
        with RV(pages_done_at). If the bundle cannot be sent, CRIU resumes the tree here at once. If the
        page link fails for good later, the target's copy is stopped, CRIU resumes the tree here from
        its frozen state, and what the target did meanwhile is lost (reported as an error).
    type: str
    choices: [stop_and_copy, stream, post_copy]
    default: stop_and_copy
  page_link:
    description:
      - The page link to the target, for O(method=stream) and O(method=post_copy), whose target end
        M(ferry.migrate.page_link) opened. It travels through OpenSSH sessions with the key that
        M(ferry.migrate.transfer_access) authorised for this checkpoint, dialled again when one breaks.
    type: dict
    suboptions:
      target:
        description: The target's address.
        type: str
        required: true
      port:
        description: The target's SSH port.
        type: int
        default: 22
      user:
        description: The target's login user, for whom M(ferry.migrate.transfer_access) authorised the key.
        type: str
        default: root
      private_key:
        description: The one-time private key.
        type: str
        required: true
      host_keys:
        description: The target's pinned host keys.
        type: list
        elements: str
        required: true
      give_up:
        description: Seconds the link may stay down before this end gives up.
        type: float
        default: 30
  send:
    description:
      - Where to send the bundle the moment it is written, as M(ferry.migrate.transfer) would (a key
        authorised by M(ferry.migrate.transfer_access)), over a connection opened before the freeze.
        Required with O(method=post_copy); with the other methods it keeps a separate transfer task,
        and its round trip through the controller, out of the downtime.
      - If the bundle cannot be delivered, the container runs again here from its checkpoint.
    type: dict
    suboptions:
      target:
        description: The target's address.
        type: str
        required: true
      port:
        description: The target's SSH port.
        type: int
        default: 22
      user:
        description: The target's login user, for whom M(ferry.migrate.transfer_access) authorised the key.
        type: str
        default: root
      private_key:
        description: The one-time private key.
        type: str
        required: true
      host_keys:
        description: The target's pinned host keys.
        type: list
        elements: str
        required: true
      timeout:
        description: Seconds for the connection and the transfer.
        type: int
        default: 60
  pidfile:
    description: Engine V(criu) only. Pidfile of the tree's root; defaults to C(<tree_dir>/<container>.pid).
    type: path
  tree_dir:
    description: Engine V(criu) only. Directory of the process trees' pidfiles.
    type: path
    default: /run/ferry/trees
extends_documentation_fragment:
  - ferry.migrate.common.images
  - ferry.migrate.common.criu
attributes:
  check_mode:
    support: full
    description: Reports whether a checkpoint would be taken; takes none.
notes:
  - Bundles hold process memory, secrets included. Remove them with O(state=absent) when done.
seealso:
  - module: ferry.migrate.transfer
  - module: ferry.migrate.restore
  - module: ferry.migrate.checkpoint_info
"""

EXAMPLES = r"""
- name: Checkpoint a podman container, keeping it restorable here
  ferry.migrate.checkpoint:
    container: redis
    checkpoint_id: redis-20261124
    tcp_established: true
  register: ckpt

- name: Checkpoint a process tree named counter (pidfile /run/ferry/trees/counter.pid)
  ferry.migrate.checkpoint:
    engine: criu
    container: counter

- name: Remove the bundle
  ferry.migrate.checkpoint:
    checkpoint_id: redis-20261124
    state: absent
"""

RETURN = r"""
path:
  description: The bundle's directory.
  returned: state=present
  type: str
  sample: /var/lib/ferry/redis-20261124
manifest:
  description: The bundle's manifest (files with size and sha256, container, criu_version, stats, frozen_at).
  returned: state=present and not in check mode
  type: dict
bytes:
  description: Total size of the bundle's files.
  returned: state=present and not in check mode
  type: int
  sample: 10485760
seconds:
  description: How long the checkpoint took.
  returned: when a checkpoint was taken
  type: float
sent:
  description: With O(send), the delivery of the bundle (sent_bytes, seconds, data_path); null without.
  returned: when a checkpoint was taken
  type: dict
pages_done_at:
  description: With O(method=post_copy), epoch time at which the last page was served and the tree here ended.
  returned: when a post-copy checkpoint was taken
  type: float
page_link:
  description: With O(method=post_copy), what the page link carried (bytes_in, bytes_out, reconnects, error).
  returned: when a post-copy checkpoint was taken
  type: dict
frozen:
  description: On failure, whether the container had been frozen (it runs again here, or the message says otherwise).
  returned: failure
  type: bool
phase:
  description: V(checkpoint) when it failed.
  returned: failure
  type: str
detail:
  description: The tool's own words (podman's or Docker's stderr, CRIU's error lines or log tail) on failure.
  returned: failure
  type: str
"""

import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _criu, _engine, _engines, _transport


def _sender(module, send):
    """The SSH session to the target's receiver, up before the container freezes: not part of the downtime."""
    try:
        channel = _transport.Channel(send["target"], send["port"], send["user"], "ferry-receive", send["timeout"],
                                     private_key=send["private_key"], host_keys=send["host_keys"])
        channel.ready()
    except (_transport.TransportError, OSError) as exc:
        module.fail_json(msg="send: %s" % exc, phase="checkpoint")
    return channel


def main():
    module = AnsibleModule(
        argument_spec=dict(
            _engines.COMMON_ARGS,
            container=dict(type="str"),
            checkpoint_id=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            leave_running=dict(type="bool", default=False),
            tcp_established=dict(type="bool", default=False),
            file_locks=dict(type="bool", default=False),
            compress=dict(type="str", choices=["none", "gzip", "zstd"], default="none"),
            include_image=dict(type="bool", default=False),
            pidfile=dict(type="path"),
            tree_dir=dict(type="path", default="/run/ferry/trees"),
            method=dict(type="str", choices=["stop_and_copy", "stream", "post_copy"], default="stop_and_copy"),
            page_link=dict(type="dict", options=dict(_transport.PEER_SPEC, give_up=dict(type="float", default=30))),
            send=dict(type="dict", options=dict(_transport.PEER_SPEC, timeout=dict(type="int", default=60))),
        ),
        required_one_of=[("container", "checkpoint_id")],
        required_if=[("state", "present", ("container",)), ("method", "stream", ("page_link",)),
                     ("method", "post_copy", ("page_link", "send"))],
        supports_check_mode=True,
    )
    params = module.params
    _engine.check_container(module, "container")
    checkpoint_id = params["container"] if params["checkpoint_id"] is None else params["checkpoint_id"]
    _engine.check_checkpoint_id(module, checkpoint_id)
    images_dir = params["images_dir"]
    path = _bundle.final_path(images_dir, checkpoint_id)

    if params["state"] == "absent":
        present = os.path.lexists(path) or os.path.lexists(_bundle.partial_path(images_dir, checkpoint_id))
        if present and not module.check_mode:
            _bundle.remove(images_dir, checkpoint_id)
        module.exit_json(changed=present, path=path)

    engine = _engines.engine_for(module)
    # Idempotent: a verified bundle of this container, which no longer runs, is the checkpoint already
    # taken. A container that runs (again) gets a fresh checkpoint: a stale one would lose its state.
    info = engine.describe(params["container"])
    if os.path.isdir(path) and not (info and info["state"] == "running"):
        try:
            manifest = _bundle.load_manifest(path)
        except _bundle.BundleError:
            manifest = None
        if manifest and params["container"] in (manifest["container"]["name"], manifest["container"]["id"]) \
                and not _bundle.verify(path, manifest):
            module.exit_json(changed=False, path=path, manifest=manifest, bytes=_bundle.total_bytes(manifest))
    if module.check_mode:
        module.exit_json(changed=True, path=path)

    method = params["method"]
    if method not in engine.capabilities["methods"]:
        module.fail_json(msg="method: engine %s offers %s only, not %s" % (engine.name, " and ".join(engine.capabilities["methods"]), method))
    if method != "stop_and_copy" and params["leave_running"]:
        module.fail_json(msg="leave_running: a copy is taken with method stop_and_copy only")
    options = {key: params[key] for key in ("leave_running", "tcp_established", "file_locks", "compress", "include_image", "method")}
    criu_version = _criu.version_string(engine.criu.version())
    finished = {}

    def finalise(fields):
        return _bundle.finalise(images_dir, checkpoint_id, dict(
            fields,
            engine=engine.name,
            criu_version=criu_version,
            source_host=socket.gethostname(),
            options=options,
            frozen_at=None if params["leave_running"] else frozen_at,
            checkpointed_at=_engine.now(),
        ))

    # Delivering it from here, over a connection opened before the freeze, keeps the controller's round
    # trips out of the downtime; the target's restore is already waiting for it.
    receiver = _sender(module, params["send"]) if params["send"] else None
    options_for_engine = dict(options, page_link=dict(params["page_link"], checkpoint_id=checkpoint_id) if params["page_link"] else None)
    if method == "post_copy":
        def post_dump(fields):
            """The tree is frozen and every image but its lazy pages written: deliver them now."""
            try:
                finished["manifest"] = finalise(fields)
                finished["sent"] = _transport.send_bundle(receiver, path, finished["manifest"])
            except (_transport.TransportError, _bundle.BundleError, OSError) as exc:
                finished["error"] = "sending the checkpoint to %s failed: %s" % (params["send"]["target"], exc)
                return False  # CRIU resumes the tree here
            return True
        options_for_engine["post_dump"] = post_dump
    partial = _bundle.start(images_dir, checkpoint_id)
    fields, bundle_dir, frozen = None, partial, False
    try:
        engine.criu.cpuinfo_dump(partial)  # the target's CPU is checked against this before restore
        frozen_at = _engine.now()
        frozen = not params["leave_running"]  # from here on the container may have been stopped, if only for a moment
        started = time.monotonic()
        try:
            fields = engine.checkpoint(params["container"], partial, options_for_engine)
        except _engine.EngineError as exc:
            if finished.get("error"):
                raise _engine.EngineError("%s; %s runs on here" % (finished["error"], params["container"]), exc.detail) from exc
            if finished.get("manifest"):
                raise _engine.EngineError(
                    "post-copy failed after the target started: %s. The target's copy was stopped and %s resumed here "
                    "from its frozen state; what it did on the target since %s is lost" % (exc, params["container"], frozen_at),
                    exc.detail) from exc
            raise
        seconds = round(time.monotonic() - started, 3)
        if method == "post_copy":
            manifest, link = finished["manifest"], fields.get("page_link")
            fields = None  # the tree ended with its last page served: nothing to resume
            module.exit_json(changed=True, path=path, manifest=manifest, bytes=_bundle.total_bytes(manifest),
                             seconds=seconds, sent=finished["sent"], pages_done_at=_engine.now(), page_link=link)
        manifest = finalise(fields)
        bundle_dir, sent = path, None
        if receiver:
            try:
                sent = _transport.send_bundle(receiver, path, manifest)
            except _transport.TransportError as exc:
                raise _engine.EngineError("sending the checkpoint to %s failed: %s" % (params["send"]["target"], exc)) from exc
    except (_engine.EngineError, _criu.CriuError, _bundle.BundleError, OSError) as exc:
        if receiver:
            receiver.kill()  # the target's receiver sees the session end; the one-time key leaves this host
        resumed = ""
        if fields is not None and not params["leave_running"]:
            # Stopped, but no rollback will come for a checkpoint that failed: it runs again here, now.
            try:
                engine.resume(bundle_dir, dict(fields, id=checkpoint_id, options=options), options)
                resumed = " (%s runs again from its checkpoint)" % params["container"]
            except (_engine.EngineError, _criu.CriuError, OSError) as again:
                resumed = " (and resuming %s failed too: %s)" % (params["container"], again)
        _bundle.remove_tree(partial)
        _engine.fail(module, "checkpoint", _engine.EngineError("%s%s" % (exc, resumed), getattr(exc, "detail", "") or getattr(exc, "log", "")),
                     frozen=frozen)
    module.exit_json(changed=True, path=path, manifest=manifest, bytes=_bundle.total_bytes(manifest), seconds=seconds,
                     sent=sent)


if __name__ == "__main__":
    main()
