import os
import shutil
import subprocess
import sys

from ansible_collections.ferry.migrate.plugins.module_utils import _lxc

CONFIG = """# Template used to create this container: /usr/share/lxc/templates/lxc-busybox
lxc.rootfs.path = dir:/var/lib/lxc/sys1/rootfs
lxc.tty.max = 0
lxc.console.path = none
lxc.mount.entry = /lib lib none ro,bind 0 0
lxc.mount.entry = /usr/lib usr/lib none ro,bind 0 0
lxc.net.0.type = macvlan
lxc.net.0.link = eth0
lxc.net.0.ipv4.address = 10.199.0.120/24
lxc.net.0.ipv4.address = 10.199.0.121/24
lxc.net.1.type = empty
"""


def config(tmp_path, text=CONFIG):
    path = tmp_path / "config"
    path.write_text(text)
    return _lxc.read_config(str(path))


def test_config_keeps_every_value_of_a_repeated_key(tmp_path):
    parsed = config(tmp_path)
    assert parsed["lxc.mount.entry"] == ["/lib lib none ro,bind 0 0", "/usr/lib usr/lib none ro,bind 0 0"]
    assert _lxc.last(parsed, "lxc.tty.max") == "0" and _lxc.last(parsed, "lxc.nosuch", "x") == "x"
    assert _lxc.interfaces(parsed) == [
        {"type": "macvlan", "link": "eth0", "ipv4.address": ["10.199.0.120/24", "10.199.0.121/24"]},
        {"type": "empty"}]


def test_a_container_that_can_move_has_no_reason(tmp_path):
    assert _lxc.cannot_move(config(tmp_path), "/var/lib/lxc/sys1") == []


def test_what_cannot_move_is_named(tmp_path):
    text = (CONFIG.replace("lxc.tty.max = 0", "lxc.tty.max = 4").replace("lxc.console.path = none\n", "")
            .replace("dir:/var/lib/lxc/sys1/rootfs", "/srv/shared/rootfs") + "lxc.net.2.type = phys\nlxc.net.2.link = enp3s0\n")
    reasons = _lxc.cannot_move(config(tmp_path, text), "/var/lib/lxc/sys1")
    assert len(reasons) == 4
    assert reasons[0].startswith("lxc.tty.max is 4") and "lxc.console.path = none" in reasons[1]
    assert "/srv/shared/rootfs" in reasons[2] and "enp3s0" in reasons[3]


def test_commands_and_criu_options():
    assert _lxc.checkpoint_args("sys1", "/b", True) == ["lxc-checkpoint", "--name", "sys1", "--checkpoint-dir", "/b", "--stop"]
    assert _lxc.checkpoint_args("sys1", "/b", False)[-1] == "/b"
    assert _lxc.restore_args("sys1", "/b") == ["lxc-checkpoint", "--restore", "--daemon", "--name", "sys1", "--checkpoint-dir", "/b"]
    # CRIU takes its newer mount engine's opposite only on restore, and refuses it on a dump.
    assert _lxc.criu_config("/w", {}, False) == "work-dir /w\nnetwork-lock iptables\n"
    assert _lxc.criu_config("/w", {"tcp_established": True, "file_locks": True}, True).splitlines() == [
        "work-dir /w", "network-lock iptables", "mntns-compat-mode", "tcp-established", "skip-in-flight", "file-locks"]


def test_the_ip_a_restore_runs_locks_connections_before_it_restores_addresses(tmp_path):
    """CRIU's ``ip addr restore`` gets CRIU's lock first (IPv4, and IPv6 where the host has it); every
    other ``ip`` command passes through unchanged, its input too."""
    log = tmp_path / "log"
    for tool in ("ip", "iptables-restore", "ip6tables-restore"):
        stub = tmp_path / tool
        stub.write_text("#!/bin/sh\n{ echo \"%s $*\"; /bin/cat; echo; } >> %s\n" % (tool, log))
        stub.chmod(0o755)
    helper = tmp_path / "helper"
    helper.write_text(_lxc.IP_LOCK_FIRST.format(python=sys.executable))
    helper.chmod(0o700)
    environ = dict(os.environ, PATH=str(tmp_path))
    subprocess.run([str(helper), "addr", "restore"], input="ADDRESSES\n", text=True, env=environ, check=True)
    subprocess.run([str(helper), "route", "restore"], input="ROUTES\n", text=True, env=environ, check=True)
    calls = log.read_text().split("\n\n")
    ipv6 = os.path.exists("/proc/sys/net/ipv6")
    assert calls[0].startswith("iptables-restore -w --noflush\n*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n")
    assert "-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT" in calls[0]
    assert calls[1].startswith("ip6tables-restore -w --noflush\n*filter") == ipv6
    assert calls[1 + ipv6:] == ["ip addr restore\nADDRESSES", "ip route restore\nROUTES", ""]


def test_files_id_is_the_same_for_one_directory_and_differs_for_a_copy(tmp_path):
    """Shared storage shows every host the same directory; a copy, even with the same times, is another one."""
    (tmp_path / "sys1" / "rootfs").mkdir(parents=True)
    (tmp_path / "sys1" / "config").write_text("lxc.uts.name = sys1\n")
    shutil.copytree(tmp_path / "sys1", tmp_path / "copy", copy_function=shutil.copy2)
    assert _lxc.files_id(str(tmp_path / "sys1")) == _lxc.files_id(str(tmp_path / "sys1"))
    assert _lxc.files_id(str(tmp_path / "copy")) != _lxc.files_id(str(tmp_path / "sys1"))
    assert os.stat(tmp_path / "copy" / "config").st_mtime_ns == os.stat(tmp_path / "sys1" / "config").st_mtime_ns
