#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore
short_description: Restore a container from a checkpoint bundle, resume it in place, or remove it
version_added: 0.1.0
description:
  - "O(state=running): restores the container of bundle C(<images_dir>/<checkpoint_id>) on this host.
    Before anything runs, the bundle is verified against its manifest (sizes and SHA-256; a bundle
    hashed as it arrived, in this boot, and unchanged since, is not read again), this host's
    CRIU must be at least as new as the one that dumped it, and this host's CPU must pass CRIU's
    compatibility check against the source's. A podman or Docker container's image must be present
    with the same image ID; when it is missing, it is loaded from the bundle if the checkpoint carries it."
  - "Engine V(docker): the container is re-created from the source's C(docker inspect) (same name,
    image by ID, command, environment, labels, mounts, network settings and limits, plus label
    C(io.ferry.checkpoint)), its file changes and checkpoint are put where Docker looks for them,
    and it is started from the checkpoint. If that fails, the re-created container is removed.
    A different container with the same name is a conflict, never replaced."
  - "O(resume=true) runs the container again where it was checkpointed (the source): the rollback of
    a migration that failed before the target took over."
  - "Once a container with a network namespace of its own runs, restored or resumed, a gratuitous ARP
    for each of its IPv4 addresses tells the segment's switches where its MAC is now (RV(announced))."
  - "A podman or Docker container with an address on a macvlan or ipvlan network is restored (or resumed)
    behind a hold: an nftables ingress chain on the network's parent device drops TCP to its addresses
    until the engine returns (RV(held)). The engine puts the address up before CRIU has restored the
    container's sockets, and a client's retransmission in between would otherwise be answered with a
    reset. It needs C(nft) (package nftables, which role C(ferry.migrate.criu_host) installs); without it
    the restore goes on with a warning. O(state=absent) removes a hold a killed restore left."
  - "O(state=absent): the container this checkpoint describes is stopped and removed from this host.
    Used to clean a target after a failed restore, and to remove the source's stopped copy once the
    target runs it. A restore still waiting for this checkpoint (O(wait)) is cancelled."
  - "Engine V(criu) with a bundle taken by method V(stream): the pages the page link
    (M(ferry.migrate.page_link)) delivered move into the bundle once the link reports every byte the
    source sent. Method V(post_copy): CRIU's lazy-pages daemon starts on this host's end of the page
    link, and the tree is restored with lazy pages, running before its memory has arrived."
  - Nothing changes when the container already runs (V(running)) or is already gone (V(absent)).
author: Ferry developers (@ferry-migrate)
options:
  checkpoint_id:
    description: Name of the bundle in O(images_dir).
    type: str
    required: true
  state:
    description: Whether the checkpoint's container runs on this host, or is absent from it.
    type: str
    choices: [running, absent]
    default: running
  resume:
    description: Resume on the host that took the checkpoint instead of restoring a transferred bundle.
    type: bool
    default: false
  engine:
    description:
      - Must match the bundle's engine; defaults to it.
      - Given with O(wait), the restore asks this host before the bundle arrives what the bundle does not
        decide (CRIU's version, the engine's images and its networks' devices), so that the container,
        down from the moment the bundle is on its way, does not wait for those answers.
    type: str
    choices: [podman, docker, criu, lxc]
  cpu_check:
    description: Refuse to restore when CRIU says this CPU cannot run the dumped processes.
    type: bool
    default: true
  wait:
    description:
      - Seconds to wait for the bundle to arrive, for a restore started before the checkpoint (role
        ferry.migrate.migrate runs this module with C(async) wherever the source delivers the bundle
        itself, so the restore begins the moment it arrives). 0 means the bundle must be here already.
      - The wait ends early when O(state=absent) is run for the same checkpoint, or when its page link
        (M(ferry.migrate.page_link)) has failed or been closed.
      - While such a restore runs, the receiver that delivered the bundle stays, so the source's
        M(ferry.migrate.checkpoint) returns once this restore is over (except for a post-copy handover).
    type: int
    default: 0
extends_documentation_fragment:
  - ferry.migrate.common.images
  - ferry.migrate.common.criu
attributes:
  check_mode:
    support: full
    description: Verifies the bundle and reports whether a restore or removal would happen; does neither.
seealso:
  - module: ferry.migrate.checkpoint
  - module: ferry.migrate.transfer
"""

EXAMPLES = r"""
- name: Restore on the target
  ferry.migrate.restore:
    checkpoint_id: redis-20261124
  register: restored

- name: Roll back, resuming the source
  ferry.migrate.restore:
    checkpoint_id: redis-20261124
    resume: true

- name: Remove the source's stopped copy once the target runs it
  ferry.migrate.restore:
    checkpoint_id: redis-20261124
    state: absent
"""

RETURN = r"""
container:
  description: The container after the restore (name, id, image_id, state, pid, rss_bytes).
  returned: state=running and not in check mode
  type: dict
stats:
  description: CRIU's restore statistics (restore_time, forking_time, pages_restored, ...; times in microseconds).
  returned: when a restore happened
  type: dict
running_at:
  description: Epoch time at which the container was running again (the end of the migration's downtime).
  returned: when a restore happened
  type: float
seconds:
  description: How long the restore took.
  returned: when a restore happened
  type: float
announced:
  description:
    - The IPv4 addresses of the container's own network namespace that a gratuitous ARP announced once it ran
      (here or, for a resume, back at home), so that switches and peers find its MAC at its new port at once.
    - Empty for a container that shares its host's network namespace (a tree's addresses are moved and announced
      by the engine) or has no address but loopback.
  returned: when a restore happened
  type: list
  elements: str
held:
  description:
    - The devices on which TCP to the container's addresses was held while its engine restored it (the
      parents of its macvlan and ipvlan networks); empty when nothing needed holding or C(nft) is missing.
  returned: when a restore happened
  type: list
  elements: str
image_loaded:
  description: The image was missing here and was loaded from the bundle.
  returned: when a podman or docker restore happened
  type: bool
phase:
  description: V(verify) or V(restore) when it failed.
  returned: failure
  type: str
detail:
  description: The tool's own words (podman's or Docker's stderr, CRIU's error lines or log tail) on failure.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _engines, _restore


def main():
    module = AnsibleModule(
        argument_spec=dict(
            _engines.COMMON_ARGS,
            engine=dict(type="str", choices=list(_engines.ENGINES)),
            checkpoint_id=dict(type="str", required=True),
            state=dict(type="str", choices=["running", "absent"], default="running"),
            resume=dict(type="bool", default=False),
            cpu_check=dict(type="bool", default=True),
            wait=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    _restore.run(module)


if __name__ == "__main__":
    main()
