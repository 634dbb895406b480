# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: migration_record
short_description: The record of one migration, the same shape for every outcome
version_added: 0.1.0
description:
  - Builds the record that role C(ferry.migrate.migrate) publishes as C(ferry_migration) (and with
    C(set_stats) as C(ferry_migrations)), that the fleet journal keeps and that fleet reports list.
  - Every record has the same keys; what an outcome does not know is null. Durations, downtime, bytes
    and throughput are computed from the phases' results.
options:
  _input:
    description:
      - C(outcome) (V(migrated), V(already_migrated), V(rolled_back), V(stranded), V(refused)), C(id),
        C(container), C(engine), C(source), C(target), C(started_at), C(ended_at), C(error), and what
        is known of C(method), C(route), C(checkpoint), C(moved), C(restore), C(marks),
        C(image_carried), C(frozen), C(failed_phase), C(found), C(recovered).
    type: dict
    required: true
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: A refusal, recorded
  ansible.builtin.set_fact:
    ferry_migration: >-
      {{ {'outcome': 'refused', 'id': 'redis-node1-to-node2', 'container': 'redis', 'engine': 'podman',
          'source': 'node1', 'target': 'node2', 'error': 'CRIU does not work on node2'} | ferry.migrate.migration_record }}
"""

RETURN = r"""
_value:
  description:
    - C(id), C(container), C(engine), C(source), C(target), C(outcome), C(error), C(started_at),
      C(ended_at), C(method), C(method_reason), C(methods_rejected), C(route), C(frozen),
      C(failed_phase), C(found), C(recovered), C(downtime_seconds), C(total_seconds), C(bytes),
      C(page_link_bytes), C(page_link_reconnects), C(page_transport) (V(tls) when a stream's pages went
      CRIU to CRIU over TLS, V(ssh) over the page link, null without pages on a link),
      C(split_window_seconds), C(throughput_mib_s) (of the final bundle's transfer),
      C(pre_copy_iterations) (each pre-copy iteration with pages_written, bytes, frozen_seconds,
      dump_seconds, send_seconds; empty for the other methods), C(pre_copy_stop) (V(converged),
      V(no_progress) or V(max_iterations)),
      C(data_path), C(image_carried), C(files_shared) (the container's files stayed on storage both hosts
      share), C(criu_stats), C(phases) (name and seconds of each).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.plugin_utils import _record


def migration_record(facts):
    if not isinstance(facts, dict):
        raise AnsibleFilterError("ferry.migrate.migration_record: expects a dict, not %s" % type(facts).__name__)
    try:
        return _record.record(facts)
    except (_record.RecordError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("ferry.migrate.migration_record: %s" % exc)


class FilterModule:
    def filters(self):
        return {"migration_record": migration_record}
