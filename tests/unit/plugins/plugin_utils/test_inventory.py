"""How Ansible reaches a host, as the ssh connection plugin's own precedence resolves it."""
import pytest

from ansible_collections.ferry.migrate.plugins.plugin_utils import _inventory

HOSTVARS = {
    "db1": {"ansible_host": "192.0.2.11", "ansible_port": 2222, "ansible_user": "ops",
            "ansible_ssh_common_args": "-o ProxyCommand=\"ssh -W %h:%p -q ops@bastion\"", "ansible_ssh_extra_args": "-o Ciphers=aes256-gcm@openssh.com"},
    "db2": {"ansible_ssh_host": "192.0.2.12", "ansible_ssh_port": 22, "ansible_ssh_user": "admin"},
    "db3": {"ansible_host": "192.0.2.13", "ansible_ssh_host": "192.0.2.99", "ansible_user": "ops"},
    "here": {"ansible_connection": "local"},
}


def test_address_port_user_and_ssh_options_come_from_the_inventory():
    found = _inventory.host_connection("db1", HOSTVARS)
    assert found == {"name": "db1", "host": "192.0.2.11", "port": 2222, "user": "ops",
                     "ssh_args": ["-o", "ProxyCommand=ssh -W %h:%p -q ops@bastion", "-o", "Ciphers=aes256-gcm@openssh.com"]}


def test_the_older_ansible_ssh_names_count_with_ansibles_own_precedence():
    db2 = _inventory.host_connection("db2", HOSTVARS)
    assert (db2["host"], db2["port"], db2["user"]) == ("192.0.2.12", 22, "admin")
    # Both set: the ssh connection plugin takes the later of its variables, ansible_ssh_host - so does Ferry.
    assert _inventory.host_connection("db3", HOSTVARS)["host"] == "192.0.2.99"


@pytest.mark.parametrize("name, message", [
    ("db9", "'db9' is not a host of the inventory"),
    ("here", "here is reached with ansible_connection=local"),
])
def test_a_host_outside_the_inventory_or_without_ssh_is_refused_by_name(name, message):
    with pytest.raises(_inventory.InventoryError, match=message):
        _inventory.host_connection(name, HOSTVARS)
