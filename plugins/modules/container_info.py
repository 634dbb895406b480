#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_info
short_description: List the containers on a host with what a migration planner needs
version_added: 0.1.0
description:
  - Lists containers of one engine with their engine, name, ID, state, image ID and name, resident
    memory of the whole process tree (RSS), CPU cores used (C(cpu), each process's average since it
    started), addresses and labels.
  - For engines V(podman) and V(docker) also lists the IDs of the images present, so a planner knows
    which targets already hold a container's image, and the host's container networks, so a migration
    knows whether the target has every network a container is attached to.
  - Engine V(docker) fails on a host whose Docker daemon is unreachable, older than API 1.40 or not
    in experimental mode, naming which.
  - For engine V(criu), the containers are the process trees whose pidfiles are in O(tree_dir).
  - Also returns the host's facts (as M(ferry.migrate.host_info) does), so that one call tells a
    migration's preflight both whether the container can come and whether there is room for it.
author: Ferry developers (@ferry-migrate)
options:
  engine:
    description: Container engine.
    type: str
    choices: [podman, docker, criu, lxc]
    default: podman
  name:
    description: Only this container (name or ID). An unknown name gives an empty list.
    type: str
  tree_dir:
    description: Engine V(criu) only. Directory of the process trees' pidfiles.
    type: path
    default: /run/ferry/trees
extends_documentation_fragment:
  - ferry.migrate.common.criu
  - ferry.migrate.common.images
attributes:
  check_mode:
    support: full
    description: The module changes nothing.
"""

EXAMPLES = r"""
- name: What runs on the hosts to drain
  ferry.migrate.container_info:
  register: found

- name: Names of running containers
  ansible.builtin.debug:
    msg: "{{ found.containers | json_query('[?state==`running`].name') }}"
"""

RETURN = r"""
containers:
  description:
    - One entry per container. C(cannot_move) names what stops it from moving anywhere; C(networks) and
      C(host_paths) (the host's directories and files it bind-mounts) are what a target must have too.
    - Engine V(lxc) adds C(files_id), the identity of the container's directory. Two hosts report the same
      one only when both see that very directory (shared storage), and then the files are not copied.
  returned: always
  type: list
  elements: dict
  sample:
    - {engine: podman, name: redis, id: 4dbe8c2f09be..., state: running, image_id: 010f802c94c1..., image_name: localhost/ferry/redis:lab,
       rss_bytes: 8450048, cpu: 0.02, addresses: [10.199.0.140], networks: [fabric], labels: {app: cache}, pid: 4242,
       checkpointed: false, network_mode: bridge, cannot_move: [], host_paths: [/srv/redis-conf]}
images:
  description: IDs of the images on this host (engines V(podman) and V(docker)).
  returned: always
  type: list
  elements: str
networks:
  description:
    - Names of the container networks on this host (engines V(podman) and V(docker)), or of its network
      devices, to which LXC containers' interfaces are linked (engine V(lxc)).
  returned: always
  type: list
  elements: str
  sample: [bridge, fabric, host, none]
host:
  description: The host's facts, as M(ferry.migrate.host_info) returns them (memory, CPUs, free space in O(images_dir), cordon).
  returned: always
  type: dict
  sample: {memory_total_bytes: 25165824000, memory_available_bytes: 20971520000, cpus: 2, load1: 0.4, cpu_group: 6f1c..., cordoned: false,
           cordon: null, images_dir_free_bytes: 52428800000}
capabilities:
  description:
    - What the engine can do, for callers that must not guess it from its name - C(methods) (how its
      memory can move, best first), C(carries_image) (a checkpoint can carry the image to a target
      that lacks it), C(exec) (the argv that runs a command inside a container, the command appended,
      with C({id}) standing for the container's ID; empty when the container's processes run on the host), C(identity) (what names it after a
      restore), C(shares_files) (its containers' files can live on storage that hosts share, so a checkpoint may leave them out),
      C(pre_dumps) (the most pre-copy iterations its final dump can stand on; null when there is no limit)
      and C(streams) (the files its checkpoint writes front to back, which a checkpoint that sends sends while they are written).
  returned: always
  type: dict
  sample: {methods: [pre_copy, stop_and_copy], carries_image: true, exec: [podman, exec, "{id}"], identity: container ID, shares_files: false,
           pre_dumps: 1, streams: [checkpoint.tar]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _engines


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            tree_dir=dict(type="path", default="/run/ferry/trees"),
            **_engines.COMMON_ARGS,
        ),
        supports_check_mode=True,
    )
    _engines.run_container_info(module)


if __name__ == "__main__":
    main()
