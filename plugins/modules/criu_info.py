#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: criu_info
short_description: Report whether CRIU works on a host and which migration methods it allows
version_added: 0.1.0
description:
  - Locates the CRIU binary, asks it through C(pycriu)'s RPC for its version, the C(criu check) verdict
    and the kernel features that decide a migration's method (dirty-memory tracking for pre-copy,
    userfaultfd lazy pages for post-copy).
  - Proves CRIU works by dumping and restoring a small process that holds a listening TCP socket.
    C(criu check) alone is not enough; CRIU 4.1 passes it on kernels 6.16 and newer yet cannot dump
    any process holding an IPv4 or IPv6 socket.
  - Also reports the kernel, a digest of the CPU description CRIU checks on restore, memory, and
    free space in the checkpoint images directory, as the fact C(ferry_criu).
author: Ferry developers (@ferry-migrate)
options:
  criu_path:
    description:
      - Path of the CRIU binary.
      - When unset, V(/usr/local/sbin/criu) is preferred over the distribution's V(/usr/sbin/criu),
        then the first C(criu) in E(PATH).
    type: path
  images_dir:
    description: Directory where checkpoints are written; its free space is reported.
    type: path
    default: /var/lib/ferry
  probe:
    description:
      - Dump and restore a probe process holding a listening socket (about 0.2 seconds).
      - Without it, RV(ansible_facts.ferry_criu.ready) relies on the version alone.
    type: bool
    default: true
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description: The module changes nothing; the probe process is private and removed.
notes:
  - Requires C(pycriu) importable by the module's interpreter; role M(ferry.migrate.criu_host) installs it.
seealso:
  - module: ferry.migrate.checkpoint
"""

EXAMPLES = r"""
- name: Learn what CRIU can do on every host
  ferry.migrate.criu_info:

- name: Refuse hosts where CRIU cannot migrate anything
  ansible.builtin.assert:
    that: ansible_facts.ferry_criu.ready
    fail_msg: "{{ ansible_facts.ferry_criu.reasons | join('; ') }}"

- name: Hosts that allow post-copy, with jmespath
  ansible.builtin.debug:
    msg: "{{ hostvars | dict2items | json_query('[?value.ansible_facts.ferry_criu.features.lazy_pages].key') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts about CRIU on this host.
  returned: always
  type: dict
  contains:
    ferry_criu:
      description: CRIU on this host.
      type: dict
      returned: always
      contains:
        ready:
          description: CRIU is new enough and the probe dumped and restored a socket-holding process.
          type: bool
          sample: true
        reasons:
          description: Why the host is not ready; empty when it is.
          type: list
          elements: str
          sample: []
        binary:
          description: Path of the CRIU binary used, or null when none was found.
          type: str
          sample: /usr/local/sbin/criu
        version:
          description: CRIU version.
          type: str
          sample: 4.2.1
        check:
          description: Verdict of C(criu check) through RPC.
          type: bool
        probe:
          description: Result of the socket probe (V(ok), V(seconds), V(error)); null when not run.
          type: dict
        features:
          description: >-
            V(mem_dirty_track) (pre-copy possible), V(lazy_pages) (post-copy possible),
            V(pidfd_store), V(page_server_tls) (CRIU built with GnuTLS).
          type: dict
          sample: {mem_dirty_track: false, lazy_pages: true, pidfd_store: true, page_server_tls: true}
        methods:
          description: Migration methods this host allows, best first.
          type: list
          elements: str
          sample: [post_copy, stream, stop_and_copy]
        can_dump_other_users:
          description: CAP_SYS_RESOURCE is in the bounding set; without it only root's processes can be dumped.
          type: bool
        pipe_max_size:
          description: Value of C(fs.pipe-max-size); post-copy needs at least 4 MiB.
          type: int
        kernel:
          description: Running kernel release.
          type: str
        cpuinfo_digest:
          description: SHA-256 of CRIU's CPU description; hosts with equal digests can run each other's dumps.
          type: str
        memory:
          description: V(total_bytes) and V(available_bytes).
          type: dict
        images_dir:
          description: The images directory examined.
          type: str
        images_dir_free_bytes:
          description: Free bytes on the file system that holds the images directory.
          type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _criu


def main():
    module = AnsibleModule(
        argument_spec=dict(
            criu_path=dict(type="path"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
            probe=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    facts = _criu.host_facts(module.params["criu_path"], module.params["images_dir"], module.params["probe"])
    module.exit_json(changed=False, ansible_facts={"ferry_criu": facts})


if __name__ == "__main__":
    main()
