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
  - Runs on the controller (C(delegate_to=localhost)). Keeps one JSON file with an entry per
    migration (by its checkpoint ID) with container, source, target, status and the history of statuses.
  - Roles C(ferry.migrate.host_drain) and C(ferry.migrate.rebalance) mark an entry V(migrating) before a
    migration starts and V(migrated), V(rolled_back) or V(stranded) when it ends. When a job is killed,
    the entries still V(migrating) are what the next run reconciles first.
  - Safe for concurrent writers (an exclusive lock) and for a controller killed at any moment (the file
    is replaced atomically).
author: Ferry developers (@ferry-migrate)
options:
  path:
    description: The journal file; its directory is created private (0700).
    type: path
    required: true
  id:
    description: Checkpoint ID of the migration to record. Without it, the module only reads.
    type: str
  status:
    description: New status of the entry. Required with O(id).
    type: str
    choices: [planned, migrating, migrated, rolled_back, stranded]
  fields:
    description: Other fields of the entry to set (container, source, target, engine, job, error...).
    type: dict
    default: {}
  lock:
    description:
      - V(hold) takes or renews the job's lock for the ansible-playbook process running this task, and
        fails naming the holder when another live run holds it; V(release) gives it back.
      - A killed run's lock is taken over at once on the same controller, else when its lease ends.
    type: str
    choices: [hold, release]
  job:
    description: Job name, for O(lock).
    type: str
  lease:
    description: Seconds a held lock stays valid without renewal, for O(lock=hold).
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    description: Reports whether the entry would change.
"""

EXAMPLES = r"""
- name: A migration starts
  ferry.migrate.journal:
    path: /var/lib/ferry-controller/drain-node1.json
    id: redis-node1-to-node2
    status: migrating
    fields: {container: redis, source: node1, target: node2, engine: podman}
  delegate_to: localhost

- name: One run of this drain at a time
  ferry.migrate.journal:
    path: /var/lib/ferry-controller/drain-node1.json
    lock: hold
    job: drain-node1
  delegate_to: localhost

- name: What an interrupted run left in flight
  ferry.migrate.journal:
    path: /var/lib/ferry-controller/drain-node1.json
  delegate_to: localhost
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
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _journal


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            id=dict(type="str"),
            status=dict(type="str", choices=list(_journal.STATUSES)),
            fields=dict(type="dict", default={}),
            lock=dict(type="str", choices=["hold", "release"]),
            job=dict(type="str"),
            lease=dict(type="int", default=900),
        ),
        required_together=[("id", "status")],
        required_if=[("lock", "hold", ("job",))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["lock"] and not module.check_mode:
            _journal.claim(params["path"], params["job"] or "", params["lease"], release=params["lock"] == "release")
        if params["id"] is None:
            changed, journal = False, _journal.read(params["path"])
        else:
            _bundle.check_id(params["id"])
            changed, journal = _journal.update(params["path"], params["id"], params["status"], params["fields"], module.check_mode)
    except _bundle.BundleError as exc:
        module.fail_json(msg="id: %s" % exc)
    except _journal.LockError as exc:
        module.fail_json(msg="lock: %s" % exc)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="path: %s" % exc)
    module.exit_json(changed=changed, entries=journal["entries"], in_flight=_journal.in_flight(journal))


if __name__ == "__main__":
    main()
