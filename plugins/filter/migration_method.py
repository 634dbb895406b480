# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_method
short_description: Choose how a migration moves memory
version_added: 0.1.0
description:
  - From the CRIU facts of the source and the target (M(ferry.migrate.criu_info)), the engine, the
    route and the user's policy, picks V(post_copy), V(pre_copy), V(stream) or V(stop_and_copy), and
    says why each better one was rejected.
  - V(auto) takes the best possible one. Post-copy is considered only with O(allow_post_copy), since
    until its last page has arrived the container's state is split between the two hosts.
  - A method asked for by name must be possible, or the filter fails naming the reason.
  - Iterative pre-copy (V(pre_copy)) needs a source whose kernel tracks dirty memory
    (C(features.mem_dirty_track)) and the V(direct) route. V(auto) takes it before V(stream) unless
    O(allow_pre_copy) is false.
options:
  _input:
    description: V(auto), or a method by name.
    type: str
    required: true
  engine:
    description: The container engine; only V(criu) offers more than V(stop_and_copy).
    type: str
    required: true
  source:
    description: The source's C(ferry_criu) fact.
    type: dict
    required: true
  target:
    description: The target's C(ferry_criu) fact.
    type: dict
    required: true
  allow_post_copy:
    description: Whether V(auto) may pick post-copy.
    type: bool
    default: false
  allow_pre_copy:
    description: Whether V(auto) may pick pre-copy.
    type: bool
    default: true
  route:
    description: The transfer route; the page link of V(stream) and V(post_copy), and V(pre_copy)'s iterations, need V(direct).
    type: str
    default: direct
  stream_transport:
    description:
      - How a V(stream)'s pages travel. V(tls) is CRIU's own TLS page server, CRIU to CRIU with a
        one-time certificate, at the speed of GnuTLS; V(ssh) is the page link through OpenSSH, which
        rides out a broken connection but carries every byte through a relay on each host.
      - V(auto) takes V(tls) when both hosts' CRIU was built with TLS (C(features.page_server_tls)),
        V(ssh) otherwise. V(tls) fails when either lacks it. Post-copy always uses V(ssh).
    type: str
    choices: [auto, tls, ssh]
    default: auto
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: Choose
  ansible.builtin.set_fact:
    method: "{{ 'auto' | ferry.migrate.migration_method('criu', source_criu, target_criu, allow_post_copy=true) }}"
"""

RETURN = r"""
_value:
  description: >-
    C(method), C(reason) (V(asked for) or V(best possible)), C(rejected) (method to reason) and
    C(transport) (V(tls) or V(ssh) for the page link of V(stream) and V(post_copy), null for V(stop_and_copy)).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.plugin_utils import _methods


def migration_method(requested, engine, source, target, allow_post_copy=False, route="direct", stream_transport="auto",
                     allow_pre_copy=True):
    try:
        return _methods.choose(requested, engine, source or {}, target or {}, bool(allow_post_copy), route, stream_transport,
                               bool(allow_pre_copy))
    except _methods.MethodError as exc:
        raise AnsibleFilterError("ferry.migrate.migration_method: %s" % exc)


class FilterModule:
    def filters(self):
        return {"migration_method": migration_method}
