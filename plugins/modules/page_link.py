#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: page_link
short_description: Open the target's end of a page link, for streamed memory or post-copy
version_added: 0.1.0
description:
  - Runs on the target of a migration by method V(stream) or V(post_copy), before the checkpoint. It
    leaves a small daemon listening on a unix socket in the private O(images_dir). The source's end
    (M(ferry.migrate.checkpoint)'s O(ferry.migrate.checkpoint#module:page_link)) reaches it through
    OpenSSH sessions with the migration's one-time key, whose forced command
    (M(ferry.migrate.transfer_access)) can join this checkpoint's link and nothing else. The two ends
    resend what a broken session lost, so CRIU on either host never talks across the network itself.
  - V(stream) also starts a CRIU page server on this host's loopback, into a private directory that
    M(ferry.migrate.restore) moves into the bundle once the link reports every byte delivered.
  - V(stream) with O(tls) has no SSH link and no relay. CRIU's page server listens with C(--tls) on
    every address of this host, at RV(port), and the source's CRIU dials it itself. Only a peer holding
    the migration's one-time certificate (lookup P(ferry.migrate.page_server_tls#lookup)) gets through.
    The bytes never pass through Python, but a break is not ridden out; the dump fails and the source's
    container runs on. The source must reach this host on that TCP port.
  - V(post_copy) waits for the lazy-pages daemon that M(ferry.migrate.restore) starts. If the link stays
    down for O(give_up) seconds, or the lazy-pages daemon stops before every page has arrived, it kills
    the restored process tree named by O(pidfile), which must not run on with missing memory; the
    source's own end then resumes the source's frozen copy.
  - With O(state=absent), stops the daemon and removes what it left.
author: Ferry developers (@ferry-migrate)
options:
  checkpoint_id:
    description: The checkpoint whose pages the link carries.
    type: str
    required: true
  state:
    description: Whether the link's target end runs.
    type: str
    choices: [present, absent]
    default: present
  method:
    description: What the link carries.
    type: str
    choices: [stream, post_copy]
    default: stream
  give_up:
    description: Seconds the link may stay down before this end gives up.
    type: float
    default: 30
  expires_in:
    description: Seconds after which the daemon stops whatever happens.
    type: int
    default: 3600
  pidfile:
    description: With V(post_copy), the pidfile of the process tree restored here, killed if its pages cannot all arrive.
    type: path
  tls:
    description:
      - With V(stream), the one-time TLS credentials of lookup P(ferry.migrate.page_server_tls#lookup), for a
        stream through CRIU's own TLS page server instead of the SSH link. They are written to a private
        directory and removed as soon as the page server ends. Never logged.
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
        description: The TCP port to listen on; V(0) takes a free one.
        type: int
        default: 0
extends_documentation_fragment:
  - ferry.migrate.common.images
  - ferry.migrate.common.criu
attributes:
  check_mode:
    support: full
    description: Reports whether the link would be opened or closed; does neither.
notes:
  - Only the criu engine offers these methods. Podman and Docker expose neither a page server nor a
    lazy-pages restore on their command lines.
seealso:
  - module: ferry.migrate.checkpoint
  - module: ferry.migrate.restore
"""

EXAMPLES = r"""
- name: Open the target end of a post-copy page link
  ferry.migrate.page_link:
    checkpoint_id: ticker-1
    method: post_copy
    pidfile: /run/ferry/trees/ticker.pid
  delegate_to: node2
  register: link

- name: Open a stream's page server with CRIU's own TLS
  ferry.migrate.page_link:
    checkpoint_id: mem-1
    method: stream
    tls: "{{ lookup('ferry.migrate.page_server_tls', '192.0.2.12') }}"
  delegate_to: node2
  register: stream_link
  no_log: true

- name: Close it
  ferry.migrate.page_link:
    checkpoint_id: ticker-1
    state: absent
"""

RETURN = r"""
local_port:
  description: With V(post_copy), the loopback port the lazy-pages daemon fetches pages from.
  returned: state=present, method=post_copy and not in check mode
  type: int
port:
  description: With O(tls), the TCP port CRIU's page server listens on, for the source's CRIU.
  returned: state=present, O(tls) and not in check mode
  type: int
pid:
  description: The daemon's process id.
  returned: state=present and not in check mode
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _engines, _pagelink


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images_dir=_engines.COMMON_ARGS["images_dir"],
            criu_path=_engines.COMMON_ARGS["criu_path"],
            checkpoint_id=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            method=dict(type="str", choices=list(_pagelink.METHODS), default="stream"),
            give_up=dict(type="float", default=30),
            expires_in=dict(type="int", default=3600),
            pidfile=dict(type="path"),
            tls=dict(type="dict", no_log=False, options=dict(_pagelink.TLS_SPEC, port=dict(type="int", default=0))),
        ),
        supports_check_mode=True,
    )
    _pagelink.run(module)


if __name__ == "__main__":
    main()
