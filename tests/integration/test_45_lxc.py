"""LXC system containers (engine lxc): an init with services moves with its memory, its processes and
its connections; a drain moves podman and lxc containers together, a rebalance spreads lxc containers;
a failed restore rolls back."""
import os
import re
import shutil
import socket
import threading
import time

import pytest

from lab import FILES, NET, containers, count, images_dir, migrate, module, playbook, ssh, start_counter, start_lxc, where

pytestmark = pytest.mark.integration
ADDRESS = NET + ".120"  # the system container's own, on the segment the hosts share (podman's fabric is .128/25)


class Client(threading.Thread):
    """One TCP connection to the container's echo service, used every 50 ms until stopped: every line
    must come back on the same connection. ``longest`` is the longest wait for an echo (the downtime
    as a client sees it)."""

    def __init__(self, address):
        super().__init__(daemon=True)
        self.sock = socket.create_connection((address, 7000), timeout=60)
        self.sent, self.longest, self.error, self.stop = 0, 0.0, None, threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                line, started = b"line %d\n" % self.sent, time.monotonic()
                self.sock.sendall(line)
                got = b""
                while len(got) < len(line):
                    chunk = self.sock.recv(len(line) - len(got))
                    if not chunk:
                        raise ConnectionError("the connection was closed after %d lines" % self.sent)
                    got += chunk
                if got != line:
                    raise AssertionError("sent %r, got %r" % (line, got))
                self.longest = max(self.longest, time.monotonic() - started)
                self.sent += 1
                time.sleep(0.05)
        except (OSError, AssertionError) as exc:
            self.error = exc

    def finish(self):
        self.stop.set()
        self.join(30)
        self.sock.close()
        assert self.error is None, self.error
        return self.sent


def program(args):
    """The program of a busybox ps line. One caught while busybox re-executes itself for an applet shows
    as "{exe} sleep 0.05", and one exiting, its command line gone, as "[sleep]"."""
    words = args.split()
    if words[0].startswith("{") and len(words) > 1:
        words = words[1:]
    return words[0].strip("[]")


def processes(node, name):
    """pid and command of the container's lasting processes, as the container sees them: not the loops'
    sleep and rm of the moment, nor one that has exited and is not reaped yet."""
    listing = ssh(node, "lxc-attach --name %s -- ps -o pid,stat,args" % name).splitlines()[1:]
    return [(pid, args) for pid, stat, args in (line.split(None, 2) for line in listing)
            if not stat.startswith("Z") and program(args) not in ("ps", "sleep", "rm")]


def routes(node, name, add=0):
    """With ``add``, give the container that many host routes (a router's table); the count of its routes."""
    netns = "nsenter --target $(lxc-info --name %s --pid --no-humanize) --net " % name
    if add:
        ssh(node, "awk 'BEGIN { for (i = 0; i < %d; i++) printf \"route add 172.%%d.%%d.%%d/32 dev eth0\\n\", 16 + int(i / 65536), "
                  "int(i / 256) %% 256, i %% 256 }' | %s ip -batch -" % (add, netns))
    return int(ssh(node, netns + "ip route show | wc -l"))


def test_system_container_moves_with_its_processes_and_connections(clean):
    before = start_lxc("node1", "sys1", ADDRESS)
    # CRIU restores a network namespace's routes between its addresses and its connection locks: a large
    # table keeps the two apart for a second or more, and a client's packet in between must not be reset.
    table = routes("node1", "sys1", add=100000)
    blob = ssh("node1", "mkdir /var/lib/lxc/sys1/rootfs/srv; dd if=/dev/urandom of=/var/lib/lxc/sys1/rootfs/srv/blob bs=1M count=32 status=none; "
                        "lxc-attach --name sys1 -- sha256sum /srv/blob")
    inside = processes("node1", "sys1")
    assert {"init", "/bin/syslogd", "/bin/nc"} <= {args.split()[0] for _pid, args in inside}, inside
    client = Client(ADDRESS)
    client.start()
    time.sleep(1)
    # The health check runs inside the container: an option of the command's own must reach it.
    proc = migrate("sys1", "node1", "node2", migrate_engine="lxc", migrate_health_command=["test", "-s", "/tmp/count"])
    time.sleep(1)
    lines = client.finish()
    assert count("node2", "sys1", "lxc") > before
    assert processes("node2", "sys1") == inside  # the same processes, same pids, same services
    assert routes("node2", "sys1") == table > 100000
    assert lines > 20 and client.longest < 30, (lines, client.longest)
    assert containers("node1", "lxc") == [] and containers("node2", "lxc") == ["sys1 running"]
    assert ssh("node1", "ls -A /var/lib/lxc") == ""
    assert images_dir("node1") == "" and images_dir("node2") == ""
    assert "by stop_and_copy" in proc.stdout
    # The files went ahead while it ran; the freeze carried what changed since, deletions included.
    report = " ".join(proc.stdout.split())  # the report's lines are wrapped
    ahead = float(re.search(r"its files sent ahead \(([0-9.]+) MiB\)", report).group(1))
    assert ahead > 32 and float(re.search(r", ([0-9.]+) MiB by ssh", report).group(1)) > ahead
    assert ssh("node2", "lxc-attach --name sys1 -- sha256sum /srv/blob") == blob
    ticks = ssh("node2", "lxc-attach --name sys1 -- ls /var").split()
    assert 1 <= len([name for name in ticks if name.startswith("tick-")]) <= 2, ticks
    [info] = module("node2", "ferry.migrate.container_info", engine="lxc")["containers"]
    assert info["addresses"] == [ADDRESS] and info["networks"] == ["eth0"] and info["state"] == "running"
    assert "/lib" in info["host_paths"] and info["cannot_move"] == []
    time.sleep(0.5)
    assert count("node2", "sys1", "lxc") > before  # still counting


def test_files_on_storage_both_hosts_share_are_not_copied(clean):
    """node1 and node2 see one /var/lib/lxc (a directory of the machine's, bind-mounted on both, as a
    shared file system would show it): only the memory moves, and no host removes the files."""
    shared = "/srv/ferry-lab-shared-lxc"  # the machine's, seen by every lab host
    os.makedirs(shared, mode=0o700, exist_ok=True)
    for node in ("node1", "node2"):
        ssh(node, "mount --bind %s /var/lib/lxc" % shared)
    try:
        before = start_lxc("node1", "sys1", ADDRESS)
        blob = ssh("node1", "mkdir /var/lib/lxc/sys1/rootfs/srv; dd if=/dev/urandom of=/var/lib/lxc/sys1/rootfs/srv/blob bs=1M count=16 "
                            "status=none; stat -c %i /var/lib/lxc/sys1/rootfs/srv/blob; lxc-attach --name sys1 -- sha256sum /srv/blob")
        client = Client(ADDRESS)
        client.start()
        time.sleep(1)
        proc = migrate("sys1", "node1", "node2", migrate_engine="lxc")
        time.sleep(1)
        assert client.finish() > 20
        report = " ".join(proc.stdout.split())
        assert "its files on storage both hosts share" in report and "files sent ahead" not in report, report[-2000:]
        assert float(re.search(r", ([0-9.]+) MiB by ssh", report).group(1)) < 16  # the memory only
        assert containers("node1", "lxc") == ["sys1 stopped"] and containers("node2", "lxc") == ["sys1 running"]
        assert count("node2", "sys1", "lxc") > before
        # The very file: not copied, not unpacked, not removed.
        assert ssh("node2", "stat -c %i /var/lib/lxc/sys1/rootfs/srv/blob; lxc-attach --name sys1 -- sha256sum /srv/blob") == blob
        assert images_dir("node1") == "" and images_dir("node2") == ""
        # Back again: the same files, the other way.
        assert "its files on storage both hosts share" in " ".join(migrate("sys1", "node2", "node1", migrate_engine="lxc").stdout.split())
        assert containers("node1", "lxc") == ["sys1 running"] and containers("node2", "lxc") == ["sys1 stopped"]
    finally:
        ssh("node2", "lxc-stop --name sys1 --kill 2>/dev/null; true")
        ssh("node1", "lxc-stop --name sys1 --kill 2>/dev/null; lxc-destroy --name sys1 >/dev/null 2>&1; true")
        for node in ("node1", "node2"):
            ssh(node, "umount /var/lib/lxc")
        shutil.rmtree(shared)


def test_container_with_ttys_is_refused_before_anything_changes(clean):
    before = start_lxc("node1", "sys1", ADDRESS, ttys=2)
    proc = migrate("sys1", "node1", "node2", check=False, migrate_engine="lxc")
    assert "sys1 cannot move: lxc.tty.max is 2" in proc.stdout and "Nothing was changed." in proc.stdout
    assert containers("node1", "lxc") == ["sys1 running"] and containers("node2", "lxc") == []
    assert count("node1", "sys1", "lxc") > before


def test_container_mounting_what_the_target_lacks_is_refused(clean):
    ssh("node1", "mkdir -p /root/sysdata")  # /root is each lab host's own
    start_lxc("node1", "sys1", ADDRESS, extra="lxc.mount.entry = /root/sysdata srv none bind,create=dir 0 0")
    proc = migrate("sys1", "node1", "node2", check=False, migrate_engine="lxc")
    assert "node2 has no /root/sysdata, which sys1 bind-mounts from its host" in proc.stdout, proc.stdout[-3000:]
    assert containers("node1", "lxc") == ["sys1 running"] and containers("node2", "lxc") == []
    ssh("node1", "lxc-stop --name sys1 --kill; lxc-destroy --name sys1; rmdir /root/sysdata")


def test_failed_restore_rolls_back_to_the_source(clean):
    before = start_lxc("node1", "sys1", ADDRESS)
    inside = processes("node1", "sys1")
    try:
        proc = migrate("sys1", "node1", "node2", check=False, migrate_engine="lxc",
                       migrate_before_restore_tasks=FILES + "/lxc_path_read_only.yml")
    finally:
        ssh("node2", "umount /var/lib/lxc 2>/dev/null; true")
    assert proc.returncode != 0
    assert "failed in phase restore" in proc.stdout and "Read-only file system" in proc.stdout
    assert "Rolled back: sys1 runs again on node1" in proc.stdout
    assert containers("node1", "lxc") == ["sys1 running"] and containers("node2", "lxc") == []
    assert processes("node1", "sys1") == inside
    assert count("node1", "sys1", "lxc") > before
    assert images_dir("node1") == "" and images_dir("node2") == ""


def echo(address, timeout=5):
    with socket.create_connection((address, 7000), timeout=timeout) as sock:
        sock.sendall(b"hello\n")
        assert sock.recv(16) == b"hello\n"


def test_drain_moves_podman_and_lxc_containers(clean, tmp_path):
    state = {"c1": start_counter("node1", "c1"), "c2": start_counter("node1", "c2"),
             "sys1": start_lxc("node1", "sys1", ADDRESS), "sys2": start_lxc("node1", "sys2", NET + ".121")}
    for address in (ADDRESS, NET + ".121"):
        echo(address)  # the tests' host, a client, knows their MACs (and the switch their ports) from now on
    proc = playbook("ferry.migrate.drain", extra=dict(drain_hosts="node1", fleet_state_dir=str(tmp_path),
                                                      fleet_engines=["podman", "lxc"]))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "node1 drained: nothing runs there." in proc.stdout
    found = where(["node1", "node2", "node3", "node4"], engines=("podman", "lxc"))
    assert sorted(found) == sorted(state), found
    for name, entries in found.items():
        assert len(entries) == 1 and entries[0].endswith(" running") and not entries[0].startswith("node1"), (name, entries)
        assert count(entries[0].split()[0], name, "lxc" if name.startswith("sys") else "podman") > state[name]
    for node in ("node1", "node2", "node3", "node4"):
        assert images_dir(node) in ("", ".cordoned")
    for address in (ADDRESS, NET + ".121"):
        echo(address)  # at once: the switch learnt their new ports from the restore, not seconds later from them
    assert playbook("ferry.migrate.drain", extra=dict(drain_hosts="node1", fleet_state_dir=str(tmp_path),
                                                      drain_state="uncordoned")).returncode == 0


def test_rebalance_spreads_lxc_containers(clean, tmp_path):
    state = {}
    for i in range(4):
        name = "sys%d" % i
        state[name] = start_lxc("node1", name, NET + ".%d" % (120 + i))
        ssh("node1", "lxc-attach --name %s -- dd if=/dev/zero of=/dev/shm/load bs=1M count=40 status=none" % name)
    proc = playbook("ferry.migrate.rebalance", extra=dict(rebalance_threshold=0.05, fleet_state_dir=str(tmp_path), fleet_engines=["lxc"]))
    assert proc.returncode == 0, proc.stdout[-4000:]
    before, after = map(float, re.search(r"imbalance before ([\d.]+), after ([\d.]+)", proc.stdout).groups())
    assert before > 0.05 >= after, (before, after)
    found = where(["node1", "node2", "node3", "node4"], engines=("lxc",))
    assert sorted(found) == sorted(state), found
    assert len({entries[0].split()[0] for entries in found.values()}) >= 2, found
    for name, entries in found.items():
        assert len(entries) == 1 and entries[0].endswith(" running"), (name, entries)
        node = entries[0].split()[0]
        assert count(node, name, "lxc") > state[name]
        assert ssh(node, "lxc-attach --name %s -- wc -c /dev/shm/load" % name).split()[0] == str(40 << 20)  # its memory came along
