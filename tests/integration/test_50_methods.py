"""Low-downtime methods on the real lab: streamed memory and post-copy of criu-engine trees holding real
memory, over a real page link, with the link broken on purpose. Every byte must come back exactly."""
import json
import re
import select
import subprocess
import threading
import time

import pytest

from lab import ADDRESS, NET, PORT, count, images_dir, memory_state, memory_tree, migrate, ssh, ssh_argv, start_counter

pytestmark = pytest.mark.integration


def tree_on(node):
    # The directory is made by the first tree a host runs.
    return ssh(node, "ls /run/ferry/trees 2>/dev/null || true")


def said(proc):
    """The play's output with line wrapping undone, to look for phrases in."""
    return " ".join(proc.stdout.split())


@pytest.mark.parametrize("transport", ["tls", "ssh"])
def test_stream_sends_the_pages_straight_to_the_target(clean, transport):
    """By CRIU's own TLS page server (the default where both CRIUs have TLS) and by the SSH page link."""
    memory_tree("node1", "mem", 7301, 64)
    before = memory_state("node1", 7301)
    out = migrate("mem", "node1", "node2", migrate_engine="criu", migrate_method="stream",
                  **({"migrate_stream_transport": "ssh"} if transport == "ssh" else {}))
    assert "by stream (asked for)" in said(out) and "pages over %s" % transport in said(out)
    after = memory_state("node2", 7301)
    assert after[1] == before[1], "a page changed on the way"
    assert after[0] > before[0], "the count was reset"
    assert tree_on("node1") == "" and tree_on("node2") == "mem.pid"
    assert images_dir("node1") == "" and images_dir("node2") == ""
    # The bundle on the source held no pages: they went over the link (64 MiB and more).
    assert int(re.search(r"([0-9.]+)\s+MiB\s+by", said(out)).group(1).split(".")[0]) >= 64


def test_auto_picks_by_features_and_policy(clean):
    memory_tree("node1", "mem", 7302, 16)
    before = memory_state("node1", 7302)
    out = migrate("mem", "node1", "node2", migrate_engine="criu")
    assert "by stream (best possible)" in said(out)  # post-copy is not allowed by default
    out = migrate("mem", "node2", "node3", migrate_engine="criu", migrate_allow_post_copy=True)
    assert "by post_copy (best possible)" in said(out)  # userfaultfd works here
    assert memory_state("node3", 7302)[1] == before[1]
    start_counter("node1")
    out = migrate("counter", "node1", "node2", migrate_allow_post_copy=True)
    assert "by stop_and_copy (best possible)" in said(out)  # podman offers pre-copy too, but this kernel has no soft-dirty
    assert count("node2") > 0


def test_post_copy_runs_on_the_target_before_its_memory_arrives(clean):
    memory_tree("node1", "mem", 7303, 256)
    before = memory_state("node1", 7303)
    out = migrate("mem", "node1", "node2", migrate_engine="criu", migrate_method="post_copy")
    assert "by post_copy (asked for)" in said(out)
    split = float(re.search(r"state\s+split\s+for\s+([0-9.]+)\s+s", said(out)).group(1))
    assert split > 0, "its pages were all there before it ran"
    # Its memory went over the page link, not in the bundle moved while it was frozen (the downtime's
    # length under load is the benchmark's to measure: bench/methods.py).
    total, link = (float(n) for n in re.search(r"([0-9.]+)\s+MiB\s+by.*pages\s+over\s+ssh\s+\(([0-9.]+)\s+MiB", said(out)).groups())
    assert link >= 256 and total - link < 16, said(out)[-2000:]
    after = memory_state("node2", 7303)
    assert after == (after[0], before[1]) and after[0] > before[0]
    assert tree_on("node1") == "" and tree_on("node2") == "mem.pid"
    assert images_dir("node1") == "" and images_dir("node2") == ""


def test_a_tls_stream_the_firewall_stops_rolls_back_and_goes_through_on_the_port_it_opens(clean):
    """The target's firewall lets in SSH and one more port only. A stream to a free port: the source's
    CRIU cannot reach it, the dump fails before anything is lost, and the tree runs on at the source with
    its memory. The same stream with migrate_stream_port set to the open port goes through."""
    memory_tree("node1", "mem", 7306, 16)
    before = memory_state("node1", 7306)
    rule = "INPUT -s %s -p tcp -m multiport ! --dports %d,7390 --syn -j REJECT --reject-with tcp-reset" % (ADDRESS["node1"], PORT["node2"])
    ssh("node2", "iptables -w -I " + rule)
    try:
        out = migrate("mem", "node1", "node2", check=False, migrate_engine="criu", migrate_method="stream")
        assert out.returncode != 0
        assert "failed in phase checkpoint" in said(out) and "Rolled back: mem runs again on node1" in said(out), said(out)[-3000:]
        assert "could not reach the target's TLS page server at %s:" % ADDRESS["node2"] in said(out)
        after = memory_state("node1", 7306)
        assert after[1] == before[1] and after[0] >= before[0]
        assert tree_on("node2") == "" and tree_on("node1") == "mem.pid"
        assert images_dir("node1") == "" and images_dir("node2") == ""
        out = migrate("mem", "node1", "node2", migrate_engine="criu", migrate_method="stream", migrate_stream_port=7390)
    finally:
        ssh("node2", "iptables -w -D " + rule)
    assert "pages over tls" in said(out)
    assert memory_state("node2", 7306)[1] == before[1]
    assert tree_on("node1") == "" and images_dir("node2") == ""


def cut_page_link_once_restored(seconds, how="DROP"):
    """Once the tree runs on node2, cut node1's traffic to it for ``seconds``: silently (DROP) or with
    a reset of every connection and connection attempt (REJECT)."""
    action = "DROP" if how == "DROP" else "REJECT --reject-with tcp-reset"
    rule = "INPUT -s %s -p tcp -j %s" % (ADDRESS["node1"], action)
    ssh("node2", "for i in $(seq 600); do [ -e /run/ferry/trees/mem.pid ] && break; sleep 0.05; done; "
                 "iptables -I %s; sleep %s; iptables -D %s" % (rule, seconds, rule))


def test_post_copy_rides_out_a_broken_page_link(clean):
    memory_tree("node1", "mem", 7304, 512)
    before = memory_state("node1", 7304)
    cutter = threading.Thread(target=cut_page_link_once_restored, args=(3, "REJECT"))
    cutter.start()
    out = migrate("mem", "node1", "node2", migrate_engine="criu", migrate_method="post_copy")
    cutter.join()
    assert re.search(r"page\s+link\s+reconnected\s+[1-9]", said(out)), said(out)[-3000:]
    after = memory_state("node2", 7304)
    assert after[1] == before[1] and after[0] > before[0]
    assert tree_on("node1") == ""


def test_post_copy_with_the_link_down_for_good_resumes_the_frozen_source(clean):
    """The documented end state: the target's copy is stopped, the source runs on from the moment it was
    frozen with every page, and the failure names what the target did in the split window as lost."""
    memory_tree("node1", "mem", 7305, 512)
    before = memory_state("node1", 7305)
    cutter = threading.Thread(target=cut_page_link_once_restored, args=(20,))
    cutter.start()
    started = time.monotonic()
    out = migrate("mem", "node1", "node2", check=False, migrate_engine="criu", migrate_method="post_copy",
                  migrate_page_link_give_up=4)
    cutter.join()
    assert out.returncode != 0
    assert "post-copy failed after the target started" in said(out) and "is lost" in said(out)
    assert "Rolled back: mem runs again on node1" in said(out)
    after = memory_state("node1", 7305)
    assert after[1] == before[1] and after[0] >= before[0]
    assert tree_on("node2") == "" and tree_on("node1") == "mem.pid"
    assert images_dir("node1") == "" and images_dir("node2") == ""
    assert time.monotonic() - started < 120


def iptables_locks(node):
    """CRIU's connection locks and Ferry's holds left in a host's firewall."""
    return [rule for rule in ssh(node, "iptables -w -S INPUT; iptables -w -S OUTPUT").splitlines()
            if "0xc114" in rule or "/32 -j DROP" in rule]


def stream_client(address):
    """ferry_stream.py's client on node3, holding one connection to ``address``:7400 until
    client_result ends it; returned once numbers flow (a server still starting is tried again)."""
    deadline = time.monotonic() + 30
    while True:
        client = subprocess.Popen(
            ssh_argv("node3") + ["python3 /usr/local/lib/ferry-lab/ferry_stream.py client %s 7400" % address],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said_first = ""
        while time.monotonic() < deadline and select.select([client.stderr], [], [], deadline - time.monotonic())[0]:
            said_first = client.stderr.readline()
            if said_first in ("streaming\n", ""):
                break
        if said_first == "streaming\n":
            time.sleep(1)
            return client
        client.kill()
        _out, err = client.communicate()
        if time.monotonic() >= deadline:
            raise AssertionError("no stream from %s:7400 reached node3 within 30 s: %s" % (address, said_first + err))
        time.sleep(0.5)


def client_result(client):
    """What the client received once the stream has gone on 3 s more: every number once, in order,
    still arriving when it stopped."""
    time.sleep(3)
    out, err = client.communicate(input="", timeout=120)
    assert out, err
    result = json.loads(out)
    assert result["faults"] == [] and result["silent"] < 1, result
    return result


def test_redis_as_a_criu_tree_keeps_every_key_by_each_method(clean):
    """Redis itself as a criu-engine tree, moved by every method in turn: its whole dataset survives."""
    keys = " ".join("k:%d" % i for i in range(1, 3001))
    ssh("node1", "ferry-lab spawn-tree kv redis-server --port 6390 --save '' --appendonly no")
    time.sleep(1)
    ssh("node1", "for i in $(seq 1 3000); do echo \"SET k:$i v-$i-$((i * 31))\"; done | redis-cli -p 6390 >/dev/null")
    before = ssh("node1", "redis-cli -p 6390 MGET " + keys)
    assert before.splitlines()[-1] == "v-3000-93000"
    for method, source, target in (("post_copy", "node1", "node2"), ("stream", "node2", "node1"), ("stop_and_copy", "node1", "node2")):
        out = migrate("kv", source, target, migrate_engine="criu", migrate_method=method, migrate_allow_post_copy=True)
        assert "by %s" % method in said(out)
        assert ssh(target, "redis-cli -p 6390 MGET " + keys) == before, "%s lost keys" % method
        assert tree_on(source) == "" and ssh(target, "redis-cli -p 6390 SET after-%s yes" % method) == "OK"


@pytest.mark.parametrize("method", ["stream", "post_copy"])
def test_a_client_keeps_its_connection_and_every_byte(clean, method):
    """A client on node3 streams numbers from a tree serving on an address of its own; the tree moves
    node1 -> node2 with its address, and the client's one connection goes on, with no number lost."""
    address = "%s.%d" % (NET, 120 if method == "stream" else 121)  # node3's ARP cache holds the last one's MAC
    ssh("node1", "ferry-lab spawn-tree --address %s/24 svc python3 /usr/local/lib/ferry-lab/ferry_stream.py serve %s 7400"
        % (address, address))
    client = stream_client(address)
    out = migrate("svc", "node1", "node2", migrate_engine="criu", migrate_method=method)
    result = client_result(client)
    assert result["first"] == 1 and result["last"] == result["lines"] > 1000, result
    assert "by %s" % method in said(out)
    assert address + "/24" in ssh("node2", "ip -br addr show dev eth0")
    assert address not in ssh("node1", "ip -br addr show dev eth0")
    assert iptables_locks("node1") == [] and iptables_locks("node2") == []
    fresh = json.loads(ssh("node3", "sleep 1 | python3 /usr/local/lib/ferry-lab/ferry_stream.py client %s 7400" % address))
    assert fresh["faults"] == [] and fresh["lines"] > 100  # and it takes new clients where it is now


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_a_container_on_the_fabric_keeps_its_address_and_its_client(clean, engine):
    """A container with an address of its own on the lab's shared segment (network fabric) streams
    numbers to a client on node3; it moves node1 -> node2, and the client's one connection goes on."""
    address = "%s.%d" % (NET, 140 if engine == "podman" else 141)  # peers' ARP caches hold each one's MAC
    ssh("node1", "%s run -d --name svc --network fabric --ip %s localhost/ferry/busybox:lab "
                 "sh -c 'i=0; while :; do i=$((i+1)); echo $i; usleep 1000; done | nc -l -p 7400'" % (engine, address))
    client = stream_client(address)
    mac = ssh("node1", "%s exec svc cat /sys/class/net/eth0/address" % engine)
    migrate("svc", "node1", "node2", migrate_engine=engine)
    assert address + "/24" in ssh("node2", "%s exec svc ip -4 addr" % engine)
    assert ssh("node2", "%s exec svc cat /sys/class/net/eth0/address" % engine) == mac  # peers' ARP entries stay right
    result = client_result(client)
    assert result["first"] == 1 and result["last"] == result["lines"] > 1000, result
    assert ssh("node1", "%s ps -a -q" % engine) == ""


SLOW_RESTORE = "/etc/criu/ferry-test-slow-restore.sh"


@pytest.fixture
def slow_restore(clean):
    """CRIU on node1 and node2 waits 5 s once a runc container's namespaces are set up, before any of its
    sockets is back: podman and Docker have put the container's address up by then, so the window in which
    a client's packet reaches no socket grows from milliseconds to longer than the client's retransmission
    interval. (Namespace lab hosts share /etc/criu; VM guests each have their own.)"""
    for node in ("node1", "node2"):
        ssh(node, "printf '#!/bin/sh\\n[ \"$CRTOOLS_SCRIPT_ACTION\" = setup-namespaces ] && sleep 5\\nexit 0\\n' > %s; chmod 755 %s; "
                  "grep -q %s /etc/criu/runc.conf || echo 'action-script %s' >> /etc/criu/runc.conf" % ((SLOW_RESTORE,) * 4))
    yield clean
    for node in ("node1", "node2"):
        ssh(node, "sed -i '\\#%s#d' /etc/criu/runc.conf; rm -f %s" % (SLOW_RESTORE, SLOW_RESTORE))


def test_a_writing_client_keeps_its_connection_through_a_slow_restore(slow_restore):
    """Regression: podman puts a restored container's address up before CRIU restores its sockets, and
    the target answered a busy client's packet in between with a reset (about one move in five in the lab).
    With that window made longer than the client's retransmission interval, the client, which writes every
    20 ms, had its connection reset on every move (its server, nc, then exits). The target now drops TCP to
    the container at the fabric's parent device until the restore returns, then removes the hold. (Docker
    sets the address up in CRIU's setup-namespaces notification, after this test's sleep, so the window
    cannot be widened this way there; its moves on the fabric go through the same hold.)"""
    address = "%s.142" % NET
    ssh("node1", "podman run -d --name svc --network fabric --ip %s localhost/ferry/busybox:lab "
                 "sh -c 'i=0; while :; do i=$((i+1)); echo $i; usleep 1000; done | nc -l -p 7400 >/dev/null'" % address)
    client = stream_client(address)
    migrate("svc", "node1", "node2")
    result = client_result(client)
    assert result["first"] == 1 and result["last"] == result["lines"] > 1000, result
    assert "ferry_hold" not in ssh("node2", "nft list tables netdev")


def test_a_network_missing_on_the_target_stops_the_migration_before_the_freeze(clean):
    ssh("node1", "podman network exists onlyhere || podman network create onlyhere")
    try:
        before = start_counter("node1", "counter", network="onlyhere")
        proc = migrate("counter", "node1", "node2", check=False)
        assert "node2 has no podman network onlyhere, which counter is attached to" in said(proc)
        assert count("node1") > before and ssh("node2", "podman ps -a -q") == ""  # never stopped, nothing left
    finally:
        ssh("node1", "podman rm -f -t0 counter >/dev/null; podman network rm onlyhere")
