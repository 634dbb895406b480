"""Inventories as operators have them (the lab's realistic fleet): a login user that is not root and
becomes root with sudo and a password, an sshd on port 2222 (node2), a host reached only through a jump
host (node3, behind node1), no ansible_connection. Migrations go where Ansible goes, a finished one is
not redone, and bad input is refused before anything changes, with nothing run on the controller."""
import hashlib
import json
import os
import re

import pytest

from lab import FLEET, GRANTS, count, migrate, recap, ssh, start_counter

pytestmark = pytest.mark.skipif(FLEET != "realistic", reason="needs the lab's realistic fleet")


def record(stdout):
    """The migration record the role printed last (its report line)."""
    return re.findall(r"msg: '?(\w+): (node\d) -> (node\d) by (\w+)", stdout)


def controller_state():
    """What a task leaking onto the controller would change: root's keys, sudo rules, Ferry's directory."""
    found = {}
    for path in ("/root/.ssh/authorized_keys", "/var/lib/ferry"):
        if os.path.isfile(path):
            found[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
        elif os.path.isdir(path):
            found[path] = sorted(os.listdir(path))
    found["/etc/sudoers.d"] = sorted(os.listdir("/etc/sudoers.d")) if os.path.isdir("/etc/sudoers.d") else []
    return found


def test_the_inventory_is_a_real_fleets():
    inventory = open(os.environ.get("FERRY_LAB_DIR", "/var/lib/ferry-lab") + "/inventory.yml").read()
    assert "ansible_connection:" not in inventory and "ansible_user: ferryops" in inventory
    assert "ansible_port: 2222" in inventory and "ProxyCommand" in inventory
    # Root cannot log in as Ansible would (from the controller's address), and node3 cannot be reached from it.
    assert ssh("node1", "grep -c '^PermitRootLogin no' /etc/ssh/sshd_config") == "1"
    assert "REJECT" in ssh("node3", "iptables -w -S INPUT")


def test_migrations_go_where_ansible_goes(clean):
    """node1 -> node2 (port 2222) -> node3 (behind a jump host) -> node1, the last relayed by the
    controller through the jump host; as a user that is not root, with sudo asking for a password."""
    before = start_counter("node1")
    legs = [("node1", "node2", "direct"), ("node2", "node3", "direct"), ("node3", "node1", "controller")]
    seen = before
    for source, target, route in legs:
        proc = migrate("counter", source, target, migrate_route=route)
        assert record(proc.stdout)[-1][:3] == ("counter", source, target), proc.stdout[-1500:]
        assert ("by controller" if route == "controller" else "by ssh") in proc.stdout
        now = count(target)
        assert now > seen, "%s -> %s: the count went from %d to %d" % (source, target, seen, now)
        seen = now
        assert ssh(source, "podman ps -a --format '{{.Names}}'") == ""
    for node in ("node1", "node2", "node3"):
        assert "ferry-transfer" not in ssh(node, "cat %s; echo" % GRANTS)
        assert "zz-ferry" not in ssh(node, "ls /etc/sudoers.d"), "a one-time sudo rule was left on %s" % node


def test_a_finished_migration_run_again_is_ok_and_unchanged(clean):
    start_counter("node1")
    migrate("counter", "node1", "node2")
    before = count("node2")
    again = migrate("counter", "node1", "node2")
    assert recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-2000:]
    assert "counter already runs on node2 and not on node1: nothing to do" in again.stdout
    assert count("node2") >= before  # the same container, never restarted


def test_a_container_on_neither_host_or_on_both_fails_naming_what_was_found(clean):
    proc = migrate("counter", "node1", "node2", check=False)
    assert "counter is absent on node1 and absent on node2" in proc.stdout and "Nothing was changed" in proc.stdout
    start_counter("node1")
    start_counter("node2")
    proc = migrate("counter", "node1", "node2", check=False)
    assert "counter is running on node1 and running on node2" in proc.stdout, proc.stdout[-2000:]
    assert recap(proc.stdout)["localhost"]["changed"] == 0
    assert count("node1") and count("node2")  # both untouched


@pytest.mark.parametrize("extra, named", [
    ({"migrate_target": "nodee2"}, 'migrate_target "nodee2" is not a host of the inventory'),
    ({"migrate_source": "localhost"}, "localhost is reached with ansible_connection=local"),
    ({"migrate_checkpoint_id": "../etc"}, 'migrate_checkpoint_id "../etc" must be'),
    ({"migrate_images_dir": "/var/lib/ferry x"}, 'migrate_images_dir "/var/lib/ferry x" must be an absolute path'),
    ({"migrate_container": "-rf"}, 'migrate_container "-rf" must be a container name'),
])
def test_bad_input_is_refused_by_name_before_anything_and_nothing_runs_on_the_controller(clean, extra, named):
    before = start_counter("node1")
    controller = controller_state()
    args = dict({"migrate_source": "node1", "migrate_target": "node2"}, **extra)
    proc = migrate(args.pop("migrate_container", "counter"), args.pop("migrate_source"), args.pop("migrate_target"), check=False, **args)
    assert named in proc.stdout, proc.stdout[-2000:]
    assert "Nothing was changed" in proc.stdout and "Rolled back" not in proc.stdout
    assert " -> node" not in proc.stdout.split("Preflight | inputs")[1].split("fatal:")[0]  # no host was asked anything
    assert controller_state() == controller
    assert count("node1") > before and "ferry-transfer" not in ssh("node2", "cat %s; echo" % GRANTS)


def test_a_host_reached_without_ssh_is_refused(clean, tmp_path):
    start_counter("node1")
    inventory = tmp_path / "extra.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"scratch": {"ansible_connection": "local"}}}}))
    lab_inventory = os.environ.get("FERRY_LAB_DIR", "/var/lib/ferry-lab") + "/inventory.yml"
    from lab import playbook
    proc = playbook("ferry.migrate.migrate", "-i", lab_inventory, "-i", str(inventory),
                    extra={"migrate_container": "counter", "migrate_source": "node1", "migrate_target": "scratch"}, check=False)
    assert "Preflight: scratch is reached with ansible_connection=local" in proc.stdout, proc.stdout[-2000:]
    assert "Nothing was changed" in proc.stdout and count("node1")


def test_the_demo_runs_on_a_real_fleets_inventory(clean):
    """The README's main job, on this lab (non-root with sudo, port 2222, jump host, no ansible_connection)."""
    from lab import LAB_VARS, playbook
    proc = playbook("ferry.migrate.demo", extra=dict(LAB_VARS, lab_hosts=4), check=True)
    assert re.search(r"counter:\s+\d+\s+on\s+node1\s+before,\s+\d+\s+on\s+node2\s+after", proc.stdout), proc.stdout[-3000:]
    assert re.search(r"redis:\s+5000/5000\s+keys\s+on\s+node2,\s+values\s+identical", proc.stdout), proc.stdout[-3000:]
    assert ssh("node1", "podman ps -a --format '{{.Names}}'") == ""
