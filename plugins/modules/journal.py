#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: journal
short_description: Record and read the progress of fleet migrations, so an interrupted job can finish
version_added: 0.1.0
description:
  - Runs where the fleet job keeps its state (role variable C(fleet_state_host)) - the controller, or a
    host that every run reaches when the controller does not last (an AWX job's container). Keeps one
    JSON file with an entry per migration (by its checkpoint ID) with container, source, target, the
    run that made it, status and the history of statuses.
  - Roles C(ferry.migrate.host_drain) and C(ferry.migrate.rebalance) mark an entry V(migrating) before a
    migration starts and V(migrated), V(rolled_back), V(stranded) or V(refused) when it ends. When a
    job is killed, the entries still V(migrating) are what the next run reconciles first.
  - Safe for concurrent writers (an exclusive lock) and for a controller killed at any moment (the file
    is replaced atomically).
author: Ferry developers (@ferry-migrate)
options:
  path:
    description: The journal file; its directory is created private (0700).
    type: path
    required: true
  updates:
    description:
      - Entries to set, all in one locked write (a fleet wave journals its moves with one task). Without
        it, the module only reads.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Checkpoint ID of the migration.
        type: str
        required: true
      status:
        description: New status of the entry.
        type: str
        required: true
        choices: [planned, migrating, migrated, rolled_back, stranded, refused]
      fields:
        description: Other fields of the entry to set (container, source, target, engine, job, error...).
        type: dict
        default: {}
  lock:
    description:
      - V(hold) takes or renews the job's lock for the run O(token), and fails naming the holder when
        another run holds it; V(release) gives it back.
      - A run that died is taken over when its lease ends; at once when it ran on the machine this task
        runs on (a killed C(ansible-playbook) run again on the same controller), or by a run that
        presents its token.
    type: str
    choices: [hold, release]
  job:
    description: Job name, for O(lock).
    type: str
  token:
    description:
      - The run's identity, for O(lock); given, the result's RV(run) holds that run's entries. Every job of one run presents the same token - the plays of one
        C(ansible-playbook), or the jobs of one AWX workflow (it travels in the workflow's artifacts).
      - Made by P(ferry.migrate.run_token#lookup); any other string works too, with the lease alone
        deciding when its run is over.
    type: str
  lease:
    description: Seconds a held lock stays valid without renewal, for O(lock=hold).
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    description: Reports whether an entry would change.
  diff_mode:
    support: full
    description: The entries that change, before and after (their status, fields and history).
"""

EXAMPLES = r"""
- name: The run's token
  ansible.builtin.set_fact:
    run_token: "{{ lookup('ferry.migrate.run_token') }}"

- name: One run of this drain at a time
  ferry.migrate.journal:
    path: /var/lib/ferry-state/drain-node1.json
    lock: hold
    job: drain-node1
    token: "{{ run_token }}"
  delegate_to: node4  # a host every job reaches: the state outlives the controller

- name: Two migrations start
  ferry.migrate.journal:
    path: /var/lib/ferry-state/drain-node1.json
    updates:
      - id: redis-node1-to-node2
        status: migrating
        fields: {container: redis, source: node1, target: node2, engine: podman, run: "{{ run_token }}"}
      - id: web-node1-to-node3
        status: migrating
        fields: {container: web, source: node1, target: node3, engine: podman, run: "{{ run_token }}"}
  delegate_to: node4

- name: What an interrupted run left in flight
  ferry.migrate.journal:
    path: /var/lib/ferry-state/drain-node1.json
  delegate_to: node4
  register: journal
"""

RETURN = r"""
entries:
  description: Checkpoint ID to entry (status, updated, history and the fields given).
  returned: always
  type: dict
in_flight:
  description: Entries still V(migrating), each with its C(id), oldest first by ID.
  returned: always
  type: list
  elements: dict
run:
  description: What the run O(token) journaled, in any of its jobs.
  returned: when O(token) is given
  type: dict
  contains:
    entries:
      description: Checkpoint ID to entry, for the entries of this run.
      type: dict
    over:
      description: IDs of this run's migrations that ended (V(migrated), V(rolled_back), V(stranded), V(refused)).
      type: list
      elements: str
    migrated:
      description: IDs of this run's migrations that reached their target.
      type: list
      elements: str
    records:
      description: The migration records of this run's ended migrations (filter P(ferry.migrate.migration_record#filter)), by ID.
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _journal


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            updates=dict(type="list", elements="dict", default=[], options=dict(
                id=dict(type="str", required=True),
                status=dict(type="str", required=True, choices=list(_journal.STATUSES)),
                fields=dict(type="dict", default={}),
            )),
            lock=dict(type="str", choices=["hold", "release"]),
            job=dict(type="str"),
            token=dict(type="str", no_log=False),  # a lock holder's name, shown in errors: not a secret
            lease=dict(type="int", default=900),
        ),
        required_if=[("lock", "hold", ("job", "token")), ("lock", "release", ("token",))],
        supports_check_mode=True,
    )
    _journal.run(module)


if __name__ == "__main__":
    main()
