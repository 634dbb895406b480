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
    choices: [podman, docker, criu, lxc]
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
  files_shared:
    description:
      - The target sees the container's own files at the same path (shared storage), so the bundle leaves
        them out and neither host removes them. The restore checks that the target's C(files_id) (see
        M(ferry.migrate.container_info)) is the one found here. Engines whose capabilities include
        C(shares_files) only (V(lxc)); role P(ferry.migrate.migrate#role) sets it when the two hosts'
        C(files_id) agree.
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
      - V(pre_copy) (a kernel that tracks dirty memory, see M(ferry.migrate.criu_info)) pre-dumps the
        running tree again and again, each iteration into a bundle of its own, C(<checkpoint_id>.pre-<n>),
        sent with O(send) at once, each after the first holding only the pages changed since the one
        before. The stop rules of O(pre_copy) end the iterations; then the tree is frozen and dumped as
        with V(stop_and_copy), but only what changed since the last iteration, and the bundle names the
        chain it stands on, each link by the digest of its file list, which the target checks before it
        restores. The tree is frozen for a moment in each iteration, while CRIU collects its pages.
        Engine V(podman) pre-dumps once (C(podman container checkpoint --pre-checkpoint)), and its final dump
        (C(--with-previous)) stands on that one only, so O(pre_copy.max_iterations) is 1 for it.
    type: str
    choices: [stop_and_copy, stream, post_copy, pre_copy]
    default: stop_and_copy
  pre_copy:
    description:
      - With O(method=pre_copy), when the iterations stop, after any of them, first rule first.
      - The pre-copy I(converged) when an iteration wrote at most O(pre_copy.converged_bytes) of pages.
      - It made I(no progress) when an iteration wrote more than 90% of what the one before wrote, that
        is, the tree dirties its memory about as fast as it is sent (P.Haul's rule).
      - It stops after O(pre_copy.max_iterations) in any case.
    type: dict
    default: {}
    suboptions:
      max_iterations:
        description: The most iterations before the final dump.
        type: int
        default: 8
      converged_bytes:
        description: Pages (in bytes) that an iteration may write and still count as converged.
        type: int
        default: 8388608
      unconverged:
        description:
          - What follows iterations that stopped without converging. V(finish) freezes and dumps what is
            still dirty (the downtime of a stop-and-copy of that much). V(abort) fails the checkpoint,
            the tree running on here, never frozen but for the iterations' moments.
        type: str
        choices: [finish, abort]
        default: finish
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
      tls:
        description:
          - With O(method=stream), send the pages with CRIU's own TLS straight to the page server that
            M(ferry.migrate.page_link) opened with the same one-time credentials (lookup
            P(ferry.migrate.page_server_tls#lookup)), at O(page_link.target), instead of through the SSH
            link. No byte passes through Python; a break fails the dump and the tree runs on here.
          - CRIU checks that the target's certificate names O(page_link.target). The credentials are
            written to a private directory here for the dump only. Never logged.
        type: dict
        suboptions:
          ca:
            description: The one-time authority's certificate, PEM.
            type: str
            required: true
          cert:
            description: The certificate, PEM.
            type: str
            required: true
          key:
            description: The certificate's private key, PEM.
            type: str
            required: true
          port:
            description: The TCP port of the target's page server (M(ferry.migrate.page_link)'s RV(ferry.migrate.page_link#module:port)).
            type: int
            required: true
  send:
    description:
      - Where to send the bundle the moment it is written, as M(ferry.migrate.transfer) would (a key
        authorised by M(ferry.migrate.transfer_access)), over a connection opened before the freeze.
        Required with O(method=post_copy) and O(method=pre_copy); with the other methods it keeps a
        separate transfer task, and its round trip through the controller, out of the downtime.
      - The bundle goes as CRIU wrote it, each file's SHA-256 taken as it is sent and checked by the
        receiver, so it is read once; the manifest here and there then lists those checksums.
      - If the bundle cannot be delivered, the container runs again here from its checkpoint.
      - An engine whose files can go before the freeze (V(lxc), the container's directory) sends them
        first, while the container runs, as a bundle of their own (C(<checkpoint_id>.pre-1)); the
        checkpoint then carries only what changed since, and names that bundle as its C(parent).
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
  description:
    - The bundle's manifest (files with size and sha256, container, criu_version, stats, frozen_at).
    - With O(method=pre_copy), C(parent) (the last iteration's bundle) and C(pre_copy), its
      C(iterations) (each with pages_written, bytes, frozen_seconds, dump_seconds, send_seconds), the
      rule that ended them (C(stop)) and C(why).
    - With files sent ahead (O(send)), C(parent) and C(pre_copy) too, with one iteration, the files', and
      C(stop) V(files_ahead).
  returned: state=present and not in check mode
  type: dict
bytes:
  description: Total size of the bundle's files, with O(method=pre_copy) its iterations' too.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _checkpoint, _engines, _pagelink, _transport


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
            files_shared=dict(type="bool", default=False),
            pidfile=dict(type="path"),
            tree_dir=dict(type="path", default="/run/ferry/trees"),
            method=dict(type="str", choices=["stop_and_copy", "stream", "post_copy", "pre_copy"], default="stop_and_copy"),
            pre_copy=dict(type="dict", default={}, options=_checkpoint.PRE_COPY_SPEC),
            page_link=dict(type="dict", options=dict(
                _transport.PEER_SPEC, give_up=dict(type="float", default=30),
                tls=dict(type="dict", no_log=False, options=dict(_pagelink.TLS_SPEC, port=dict(type="int", required=True))))),
            send=dict(type="dict", options=dict(_transport.PEER_SPEC, timeout=dict(type="int", default=60))),
        ),
        required_one_of=[("container", "checkpoint_id")],
        required_if=[("state", "present", ("container",)), ("method", "stream", ("page_link",)),
                     ("method", "post_copy", ("page_link", "send")), ("method", "pre_copy", ("send",))],
        supports_check_mode=True,
    )
    _checkpoint.run(module)


if __name__ == "__main__":
    main()
