"""fleet_model: measurements, inventory overrides, engines concatenated, only running containers."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.filter.fleet_model import fleet_model

MIB = 1 << 20
HOST = {"memory_total_bytes": 1000 * MIB, "memory_available_bytes": 600 * MIB, "cpus": 4, "load1": 1.5,
        "cpu_group": "g1", "cordoned": False}


def container(name, rss, state="running", cpu=0.5, engine="podman"):
    return {"name": name, "state": state, "rss_bytes": rss * MIB, "cpu": cpu, "engine": engine, "labels": {"a": "b"}}


def test_measured_figures():
    model = fleet_model({"n1": HOST}, {"n1": [container("a", 100), container("gone", 50, state="exited")]})
    assert model["hosts"]["n1"] == {"memory_bytes": 1000 * MIB, "memory_used_bytes": 400 * MIB, "cpus": 4.0, "cpu_used": 1.5,
                                    "cpu_group": "g1", "cordoned": False}
    assert [c["name"] for c in model["containers"]] == ["a"] and model["containers"][0]["host"] == "n1"


def test_inventory_overrides_and_engine_pairs():
    hostvars = {"n1": {"ferry_memory_bytes": 200 * MIB, "ferry_reserved_bytes": 10 * MIB, "ferry_cpus": 2, "ferry_cpu_group": "lab"}}
    pairs = [["n1", [container("a", 100)]], ["n1", [container("t", 20, engine="criu", cpu=0.25)]]]
    model = fleet_model({"n1": HOST}, pairs, hostvars)
    assert model["hosts"]["n1"] == {"memory_bytes": 200 * MIB, "memory_used_bytes": 130 * MIB, "cpus": 2.0, "cpu_used": 0.75,
                                    "cpu_group": "lab", "cordoned": False}
    assert sorted(c["engine"] for c in model["containers"]) == ["criu", "podman"]


@pytest.mark.parametrize("hosts, containers, hostvars, message", [
    ([], {}, None, "must be mappings"),
    ({"n1": HOST}, [["n1"]], None, "list of \\[host, containers\\] pairs"),
    ({"n1": HOST}, {}, {"n1": {"ferry_memory_bytes": "lots"}}, "must be numbers"),
])
def test_bad_input_names_the_filter(hosts, containers, hostvars, message):
    with pytest.raises(AnsibleFilterError, match="ferry.migrate.fleet_model: .*" + message):
        fleet_model(hosts, containers, hostvars)
