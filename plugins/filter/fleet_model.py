# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_model
short_description: Build the planners' fleet model from host_info and container_info results
version_added: 0.1.0
description:
  - Combines what M(ferry.migrate.host_info) and M(ferry.migrate.container_info) measured on each host
    into the input of P(ferry.migrate.drain_plan#filter) and P(ferry.migrate.rebalance_plan#filter).
  - Inventory variables of a host override the measurements. V(ferry_memory_bytes) sets its memory
    capacity; its used memory is then V(ferry_reserved_bytes) plus its containers' RSS (otherwise it is
    MemTotal minus MemAvailable). V(ferry_cpus) sets its CPUs, and its CPU use is then its containers'
    (otherwise the larger of the load average and the containers'). V(ferry_cpu_group) sets its CPU
    compatibility group.
  - Only running containers are counted and planned.
options:
  _input:
    description: Host name to the C(host) result of M(ferry.migrate.host_info).
    type: dict
    required: true
  containers:
    description:
      - Host name to the C(containers) result of M(ferry.migrate.container_info), or a list of
        C([host, containers]) pairs (one per host and engine; a host's lists are concatenated).
    type: raw
    required: true
  hostvars:
    description: Where the inventory overrides are looked up (pass C(hostvars)).
    type: dict
    default: {}
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: The fleet as the planners see it
  ansible.builtin.set_fact:
    fleet: "{{ host_facts | ferry.migrate.fleet_model(containers_by_host, hostvars) }}"
"""

RETURN = r"""
_value:
  description: The fleet model.
  type: dict
  contains:
    hosts:
      description: Host name to C(memory_bytes), C(memory_used_bytes), C(cpus), C(cpu_used), C(cpu_group), C(cordoned).
      type: dict
    containers:
      description: Running containers with C(name), C(host), C(engine), C(rss_bytes), C(cpu), C(labels).
      type: list
      elements: dict
"""

from ansible.errors import AnsibleFilterError

OVERRIDES = ("ferry_memory_bytes", "ferry_reserved_bytes", "ferry_cpus", "ferry_cpu_group")


def fleet_model(hosts, containers, hostvars=None):
    if isinstance(containers, list):  # [host, containers] pairs, one per host and engine
        pairs, containers = containers, {}
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[1], list):
                raise AnsibleFilterError("ferry.migrate.fleet_model: containers must be a mapping or a list of [host, containers] pairs")
            containers[pair[0]] = containers.get(pair[0], []) + pair[1]
    if not isinstance(hosts, dict) or not isinstance(containers, dict):
        raise AnsibleFilterError("ferry.migrate.fleet_model: input and containers must be mappings by host name")
    model = {"hosts": {}, "containers": []}
    for name in sorted(hosts):
        facts, running = hosts[name] or {}, [c for c in containers.get(name) or [] if c.get("state") == "running"]
        try:
            found = (hostvars or {}).get(name) or {}
            override = {key: found[key] for key in OVERRIDES if key in found}
        except Exception as exc:  # pylint: disable=broad-except
            raise AnsibleFilterError("ferry.migrate.fleet_model: inventory overrides of %s: %s" % (name, exc))
        rss = sum(c.get("rss_bytes") or 0 for c in running)
        cpu = sum(c.get("cpu") or 0 for c in running)
        try:
            memory = int(override.get("ferry_memory_bytes", facts.get("memory_total_bytes", 0)))
            if "ferry_memory_bytes" in override:
                used = int(override.get("ferry_reserved_bytes", 0)) + rss
            else:
                used = max(rss, facts.get("memory_total_bytes", 0) - facts.get("memory_available_bytes", 0))
            cpus = float(override.get("ferry_cpus", facts.get("cpus", 1)))
        except (TypeError, ValueError) as exc:
            raise AnsibleFilterError("ferry.migrate.fleet_model: %s: ferry_memory_bytes, ferry_reserved_bytes and ferry_cpus must be numbers (%s)"
                                     % (name, exc))
        model["hosts"][name] = {
            "memory_bytes": memory, "memory_used_bytes": used, "cpus": cpus,
            "cpu_used": cpu if "ferry_cpus" in override else max(cpu, facts.get("load1", 0.0)),
            "cpu_group": str(override.get("ferry_cpu_group", facts.get("cpu_group", ""))),
            "cordoned": bool(facts.get("cordoned")),
        }
        for container in sorted(running, key=lambda c: c.get("name", "")):
            model["containers"].append({"name": container.get("name"), "host": name, "engine": container.get("engine", "podman"),
                                        "rss_bytes": container.get("rss_bytes") or 0, "cpu": container.get("cpu") or 0,
                                        "labels": container.get("labels") or {}})
    return model


class FilterModule:
    def filters(self):
        return {"fleet_model": fleet_model}
