"""Benchmark: downtime, total time and bytes of each migration method, node1 -> node2 on the local lab,
for workloads holding 64 MiB to 4 GiB, with the baselines measured in the same run: the raw link
throughput between the two hosts, and the by-hand podman flow (checkpoint --export, scp, restore --import).

Workloads: engine criu, a process tree holding N MiB of random bytes it never changes and a counter
(roles/lab/files/ferry_memory.py), moved by stop_and_copy, stream and post_copy; engine podman, a Redis
holding about N MiB (random keys), moved by Ferry (stop_and_copy: this kernel tracks no dirty memory) and
by hand. Baselines of CRIU by itself: its page server (stop-and-copy's and stream's floor) and its lazy
pages (post-copy's), plain and with --tls. Downtime is Ferry's record (freeze to running on the target). For the criu trees, a client on
each host polls the counter every 5 ms; the client gap is the time between its last answer on the
source and its first on the target.

Writes the table and a PNG (downtime against memory, per method) to docs/. A measurement, not a test.
Usage: python bench/methods.py [MiB ...]   (default 64 256 1024 4096; the lab must be up)
"""
import base64
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from lab import ADDRESS, GRANTS, OPS_USER, PORT as SSH_PORT, RESET, ROOT, memory_state, memory_tree, playbook, ssh, ssh_argv  # noqa: E402  pylint: disable=wrong-import-position
from transfer import SSH_CIPHER, timed, write_section  # noqa: E402  pylint: disable=wrong-import-position

SIZES = [int(arg) for arg in sys.argv[1:]] or [64, 256, 1024, 4096]
PORT = 7600
POLLER = r"""
import socket, sys, time
port, until, out = int(sys.argv[1]), time.time() + float(sys.argv[2]), open(sys.argv[3], 'w')
while time.time() < until:
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=0.05)
        out.write('%.4f %s\n' % (time.time(), s.recv(64).decode().strip())); out.flush(); s.close()
    except OSError:
        pass
    time.sleep(0.005)
"""
SINK = r"""
import socket, sys, time
srv = socket.create_server((sys.argv[1], 7690)); conn = srv.accept()[0]; got = 0; start = None
buf = memoryview(bytearray(4 << 20))  # one buffer, reused: the sink must not be what limits the link
while True:
    n = conn.recv_into(buf)
    if start is None: start = time.monotonic()
    if not n: break
    got += n
print(got / 1048576 / (time.monotonic() - start))
"""
SOURCE = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 7690)); block = bytes(4 << 20)
for _ in range(int(sys.argv[2]) // 4): s.sendall(block)
s.close()
"""
# One CA and one certificate (for the target's address, so CRIU's name check passes) for CRIU's --tls.
TLS_CERTS = r"""
set -e
rm -rf /tmp/ptls; mkdir -m 700 /tmp/ptls; cd /tmp/ptls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=ferry-bench-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={0} -addext subjectAltName=IP:{0} -keyout key.pem -out req.csr 2>/dev/null
openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -copy_extensions copy -days 1 -out cert.pem 2>/dev/null
tar -c ca.pem cert.pem key.pem | base64 -w0
"""
TLS_OPTIONS = " --tls --tls-cacert /tmp/ptls/ca.pem --tls-cert /tmp/ptls/cert.pem --tls-key /tmp/ptls/key.pem"
PAGE_SERVER_PORT = 7700


def reset():
    for node in ("node1", "node2"):
        ssh(node, RESET)
        ssh(node, "rm -f /tmp/poll.log /tmp/bench.tar.zst")


def raw_link(mib=2048):
    """Plain TCP from node1 to node2 on the fabric, memory to memory, no encryption: the link's ceiling."""
    ssh("node2", "cat > /tmp/sink.py <<'EOF'\n%sEOF" % SINK)
    ssh("node1", "cat > /tmp/source.py <<'EOF'\n%sEOF" % SOURCE)
    sink = subprocess.Popen(ssh_argv("node2") + ["python3 /tmp/sink.py " + ADDRESS["node2"]], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    ssh("node1", "python3 /tmp/source.py %s %d" % (ADDRESS["node2"], mib))
    return float(sink.communicate(timeout=120)[0])


def node_key():
    """A key of node1's own that node2's login user (root, or the realistic lab's ferryops) accepts, and
    node2's pinned host key: for the by-hand baselines."""
    ssh("node1", "rm -f /tmp/hand-key*; ssh-keygen -q -t ed25519 -N '' -C ferry-bench-hand -f /tmp/hand-key")
    ssh("node2", "sed -i '/ferry-bench-hand/d' %s; echo '%s' >> %s" % (GRANTS, ssh("node1", "cat /tmp/hand-key.pub"), GRANTS))
    ssh("node1", "ssh-keyscan -p %d -t ed25519 %s > /tmp/hand-known 2>/dev/null" % (SSH_PORT["node2"], ADDRESS["node2"]))
    return "-i /tmp/hand-key -o UserKnownHostsFile=/tmp/hand-known"


def openssh_link(mib=2048):
    """OpenSSH from node1 to node2, memory to memory, with the cipher Ferry's sessions negotiate."""
    options = node_key()
    took = timed("node1", "head -c %dM /dev/zero | ssh %s -p %d -o Compression=no -c %s %s@%s 'cat >/dev/null'"
                 % (mib, options, SSH_PORT["node2"], SSH_CIPHER, OPS_USER, ADDRESS["node2"]))
    ssh("node2", "sed -i '/ferry-bench-hand/d' %s" % GRANTS)
    return mib / took


def page_server_run(size, tls):
    """CRIU by itself, the floor Ferry's stop-and-copy and stream are measured against: the tree dumped from
    node1 straight into CRIU's page server on node2 (plain, or with CRIU's --tls), its other images (a few
    hundred KiB) copied beside the pages over OpenSSH, and restored there. Downtime: the three steps' own
    times, each timed on its host, as a tool chaining them would see them."""
    reset()
    target = ADDRESS["node2"]
    if tls:
        certs = ssh("node1", TLS_CERTS.format(target))
        ssh("node2", "rm -rf /tmp/ptls; mkdir -m 700 /tmp/ptls; echo %s | base64 -d | tar -x -C /tmp/ptls" % certs)
    options = TLS_OPTIONS if tls else ""
    login = node_key()
    memory_tree("node1", "mem", PORT, size)
    before = memory_state("node1", PORT)
    # The restored tree's pidfile goes where Ferry's trees keep theirs: a fresh lab host has no such directory yet.
    ssh("node2", "pkill -f '^criu page-server'; rm -rf /tmp/ps-dst /tmp/ps-img; mkdir -m 700 /tmp/ps-dst; mkdir -p /run/ferry/trees; "
                 "install -d -m 700 -o %s /tmp/ps-img; "
                 "criu page-server -D /tmp/ps-dst -o page-server.log --address %s --port %d -d%s </dev/null >/dev/null 2>&1"
        % (OPS_USER, target, PAGE_SERVER_PORT, options))
    ssh("node1", "rm -rf /tmp/ps-src; mkdir -m 700 /tmp/ps-src")
    dump = timed("node1", "criu dump -t $(cat /run/ferry/trees/mem.pid) -D /tmp/ps-src -o dump.log --page-server --address %s --port %d%s"
                 % (target, PAGE_SERVER_PORT, options))
    copy = timed("node1", "tar -C /tmp/ps-src -c --exclude dump.log . | ssh %s -p %d -o Compression=no -c %s %s@%s 'tar -x -C /tmp/ps-img'"
                 % (login, SSH_PORT["node2"], SSH_CIPHER, OPS_USER, target))
    restore = timed("node2", "mv /tmp/ps-img/* /tmp/ps-dst/ && criu restore -D /tmp/ps-dst -o restore.log -d --pidfile /run/ferry/trees/mem.pid")
    after = memory_state("node2", PORT)
    if after[1] != before[1] or after[0] < before[0]:
        raise AssertionError("CRIU's page server lost state: %r then %r" % (before, after))
    pages = int(ssh("node2", "du -cb /tmp/ps-dst/pages-*.img | tail -1 | cut -f1"))
    ssh("node2", "rm -rf /tmp/ps-dst /tmp/ps-img /tmp/ptls; sed -i '/ferry-bench-hand/d' %s" % GRANTS)
    ssh("node1", "rm -rf /tmp/ps-src /tmp/ptls")
    return {"downtime_seconds": dump + copy + restore, "total_seconds": dump + copy + restore, "bytes": pages,
            "phases": [{"name": "checkpoint", "seconds": dump}, {"name": "transfer", "seconds": copy},
                       {"name": "restore", "seconds": restore}]}


LAZY_READY = "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = status-ready ] && date +%s.%N > /tmp/lz-ready\nexit 0\n"


def lazy_run(size, tls):
    """CRIU's own post-copy, the floor Ferry's is measured against: the tree dumped on node1 with
    --lazy-pages (its page server then serves the pages from node1, plain or with --tls), the other
    images copied over OpenSSH, and on node2 CRIU's lazy-pages daemon fetching from node1 while the tree,
    restored with --lazy-pages, runs. Downtime: dump until CRIU serves, the copy, and the daemon's start and
    the restore, each timed on its host; split window: the restore's end to the dump's exit."""
    reset()
    source = ADDRESS["node1"]
    options = TLS_OPTIONS if tls else ""
    if tls:  # the page server is on the source here: its certificate names node1
        certs = ssh("node1", TLS_CERTS.format(source))
        ssh("node2", "rm -rf /tmp/ptls; mkdir -m 700 /tmp/ptls; echo %s | base64 -d | tar -x -C /tmp/ptls" % certs)
    login = node_key()
    memory_tree("node1", "mem", PORT, size)
    before = memory_state("node1", PORT)
    ssh("node1", "rm -rf /tmp/lz-src /tmp/lz-ready /tmp/lz-done; mkdir -m 700 /tmp/lz-src; printf '%s' > /tmp/lz-act; chmod +x /tmp/lz-act"
        % LAZY_READY.replace("%", "%%"))
    ssh("node2", "rm -rf /tmp/lz-dst; install -d -m 700 -o %s /tmp/lz-dst; mkdir -p /run/ferry/trees" % OPS_USER)
    started = float(ssh("node1", "date +%%s.%%N; setsid sh -c 'criu dump -t $(cat /run/ferry/trees/mem.pid) -D /tmp/lz-src -o dump.log "
                                 "--lazy-pages --address %s --port %d --action-script /tmp/lz-act%s; date +%%s.%%N > /tmp/lz-done' "
                                 "</dev/null >/dev/null 2>&1 &" % (source, PAGE_SERVER_PORT, options)))
    ready = float(ssh("node1", "while [ ! -s /tmp/lz-ready ]; do sleep 0.005; done; cat /tmp/lz-ready"))
    copy = timed("node1", "tar -C /tmp/lz-src -c --exclude dump.log . | ssh %s -p %d -o Compression=no -c %s %s@%s 'tar -x -C /tmp/lz-dst'"
                 % (login, SSH_PORT["node2"], SSH_CIPHER, OPS_USER, ADDRESS["node2"]))
    restore = timed("node2", "criu lazy-pages --page-server --address %s --port %d -D /tmp/lz-dst -o lazy.log -d%s && "
                             "criu restore -D /tmp/lz-dst -o restore.log -d --lazy-pages --pidfile /run/ferry/trees/mem.pid"
                    % (source, PAGE_SERVER_PORT, options))
    running = float(ssh("node2", "date +%s.%N"))
    done = float(ssh("node1", "while [ ! -s /tmp/lz-done ]; do sleep 0.01; done; cat /tmp/lz-done"))
    after = memory_state("node2", PORT)
    if after[1] != before[1] or after[0] < before[0]:
        raise AssertionError("CRIU's lazy pages lost state: %r then %r" % (before, after))
    ssh("node2", "rm -rf /tmp/lz-dst /tmp/ptls; sed -i '/ferry-bench-hand/d' %s" % GRANTS)
    ssh("node1", "rm -rf /tmp/lz-src /tmp/lz-act /tmp/lz-ready /tmp/lz-done /tmp/ptls")
    downtime = (ready - started) + copy + restore
    return {"downtime_seconds": downtime, "total_seconds": done - started, "bytes": size << 20,
            "split_window_seconds": done - running,
            "phases": [{"name": "checkpoint", "seconds": ready - started}, {"name": "transfer", "seconds": copy},
                       {"name": "restore", "seconds": restore}]}


def migrate(name, engine, method, source="node1", target="node2", **options):
    proc = playbook(os.path.join(ROOT, "bench", "methods.yml"), check=True, extra=dict(
        migrate_container=name, migrate_source=source, migrate_target=target, migrate_engine=engine,
        migrate_method=method, migrate_allow_post_copy=True, **options))
    return json.loads(base64.b64decode(re.search(r"FERRY-RECORD ([A-Za-z0-9+/=]+)", proc.stdout).group(1)))


def polls(node):
    rows = [line.split() for line in ssh(node, "cat /tmp/poll.log 2>/dev/null").splitlines()]
    return [(float(t), int(c)) for t, c in rows if c.isdigit()]


def criu_run(size, method, **options):
    reset()
    memory_tree("node1", "mem", PORT, size)
    for node in ("node1", "node2"):
        ssh(node, "cat > /tmp/poller.py <<'EOF'\n%sEOF\nsetsid python3 /tmp/poller.py %d 900 /tmp/poll.log "
                  "</dev/null >/dev/null 2>&1 &" % (POLLER, PORT))
    time.sleep(1)
    record = migrate("mem", "criu", method, **options)
    time.sleep(1)
    ssh("node1", "pkill -f poller.py", check=False)
    ssh("node2", "pkill -f poller.py", check=False)
    source, target = polls("node1"), polls("node2")
    gap = (target[0][0] - source[-1][0]) if source and target else None
    if target and source and target[0][1] < source[-1][1]:
        raise AssertionError("the counter went back: %d then %d" % (source[-1][1], target[0][1]))
    return dict(record, client_gap_seconds=gap)


FILL = r"""
import os, sys
out = sys.stdout.buffer
for i in range(int(sys.argv[1]) * 1024):
    value = os.urandom(1024)  # incompressible, like most memory: zstd cannot shrink it for the by-hand flow
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\nk:%d\r\n$1024\r\n" % (len(b"k:%d" % i), i) + value + b"\r\n")
"""


def redis(size):
    """Redis holding about ``size`` MiB: size x 1024 keys of 1 KiB random bytes."""
    ssh("node1", "podman run -d --name redis --network none localhost/ferry/redis:lab redis-server --save '' --appendonly no")
    time.sleep(1)
    ssh("node1", "cat > /tmp/fill.py <<'EOF'\n%sEOF\npython3 /tmp/fill.py %d | podman exec -i redis redis-cli --pipe >/dev/null"
        % (FILL, size))
    return int(ssh("node1", "podman exec redis redis-cli DBSIZE"))


def redis_tree_runs(size):
    """Redis itself as a criu-engine tree holding about ``size`` MiB, moved by each method in turn
    (node1 -> node2 -> node1 -> node2); its dataset digest must not change. Returns {method: record}."""
    reset()
    ssh("node1", "ferry-lab spawn-tree kv redis-server --port 6390 --save '' --appendonly no --enable-debug-command yes")
    time.sleep(1)
    ssh("node1", "cat > /tmp/fill.py <<'EOF'\n%sEOF\npython3 /tmp/fill.py %d | redis-cli -p 6390 --pipe >/dev/null"
        % (FILL, size))
    digest = ssh("node1", "redis-cli -p 6390 DEBUG DIGEST")
    records, host = {}, "node1"
    for method in ("stop_and_copy", "stream", "post_copy"):
        target = "node2" if host == "node1" else "node1"
        records[method] = migrate("kv", "criu", method, source=host, target=target)
        if ssh(target, "redis-cli -p 6390 DEBUG DIGEST") != digest:
            raise AssertionError("redis lost data moving by %s" % method)
        host = target
    return records


def podman_run(size):
    reset()
    keys = redis(size)
    record = migrate("redis", "podman", "stop_and_copy")
    assert int(ssh("node2", "podman exec redis redis-cli DBSIZE")) == keys
    return record


def by_hand(size):
    """What a user does today: podman checkpoint --export (zstd), scp, podman restore --import."""
    reset()
    keys = redis(size)
    options = node_key()
    started = time.monotonic()
    ssh("node1", "podman container checkpoint --export /tmp/bench.tar.zst --compress zstd redis")
    dumped = time.monotonic()
    ssh("node1", "scp -q %s -P %d /tmp/bench.tar.zst %s@%s:/tmp/" % (options, SSH_PORT["node2"], OPS_USER, ADDRESS["node2"]))
    copied = time.monotonic()
    ssh("node2", "podman container restore --import /tmp/bench.tar.zst")
    restored = time.monotonic()
    downtime = restored - started
    size_bytes = int(ssh("node2", "stat -c %s /tmp/bench.tar.zst"))
    assert int(ssh("node2", "podman exec redis redis-cli DBSIZE")) == keys
    ssh("node2", "sed -i '/ferry-bench-hand/d' %s" % GRANTS)
    return {"downtime_seconds": downtime, "total_seconds": downtime, "bytes": size_bytes,
            "phases": [{"name": "checkpoint", "seconds": dumped - started}, {"name": "transfer", "seconds": copied - dumped},
                       {"name": "restore", "seconds": restored - copied}]}


def plot(rows, path):
    """Downtime against memory, one line per method (log-log axes)."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(9, 5.6), layout="constrained")
    axes = figure.add_subplot()
    for label in sorted({row["label"] for row in rows}):
        points = sorted((row["mib"], row["downtime"]) for row in rows if row["label"] == label and row["downtime"])
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("memory (MiB)")
    axes.set_ylabel("downtime (s)")
    axes.set_title("Downtime by memory size and method")
    axes.grid(which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, format="png", dpi=100)


def table_row(label, size, record):
    phases = {phase["name"]: float(phase["seconds"]) for phase in record.get("phases", [])}
    return {"label": label, "mib": size, "downtime": float(record["downtime_seconds"]),
            "gap": record.get("client_gap_seconds"), "total": float(record["total_seconds"]),
            "bytes": int(record["bytes"]), "split": record.get("split_window_seconds"),
            "move": moving(record), "phases": [phases.get(name) for name in ("checkpoint", "transfer", "restore")],
            "runtime_dump": ((record.get("criu_stats") or {}).get("runtime_checkpoint_duration") or 0) / 1e6 or None}


def main():
    started = time.monotonic()
    link = {"raw TCP": raw_link(), "OpenSSH " + SSH_CIPHER: openssh_link()}
    print(link, flush=True)
    rows = []
    for size in SIZES:
        for tls in (False, True):
            rows.append(table_row("CRIU page server" + (" --tls" if tls else ""), size, page_server_run(size, tls)))
            print(rows[-1], flush=True)
        for tls in (False, True):
            rows.append(table_row("CRIU lazy pages" + (" --tls" if tls else ""), size, lazy_run(size, tls)))
            print(rows[-1], flush=True)
        for method in ("stop_and_copy", "stream", "post_copy"):
            rows.append(table_row("criu " + method, size, criu_run(size, method)))
            print(rows[-1], flush=True)
        rows.append(table_row("criu stream over the SSH link", size, criu_run(size, "stream", migrate_stream_transport="ssh")))
        print(rows[-1], flush=True)
        for method, record in redis_tree_runs(size).items():
            rows.append(table_row("redis (criu) " + method, size, record))
            print(rows[-1], flush=True)
        rows.append(table_row("podman Ferry", size, podman_run(size)))
        print(rows[-1], flush=True)
        rows.append(table_row("podman by hand", size, by_hand(size)))
        print(rows[-1], flush=True)
    reset()
    write(rows, link, time.monotonic() - started)


def moving(record):
    """Seconds of the phases that move the state (checkpoint, transfer, restore), without Ansible's preflight
    and finalisation."""
    return sum(float(phase["seconds"]) for phase in record["phases"] if phase["name"] in ("checkpoint", "transfer", "restore"))


def cell(value, fmt="%.3f"):
    return fmt % value if value is not None else "–"


def write(rows, link, seconds):
    lines = ["| memory | workload, method | downtime s | client gap s | split window s | total s | checkpoint / transfer / restore s "
             "| MiB moved | moving / (MiB / raw link) | downtime: by hand / this |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        hand = [r for r in rows if r["mib"] == row["mib"] and r["label"] == "podman by hand"]
        ratio = hand[0]["downtime"] / row["downtime"] if hand and row["label"] == "podman Ferry" else None
        mib = row["bytes"] / 1048576
        lines.append("| %d MiB | %s | %s | %s | %s | %s | %s | %.0f | %s | %s |" % (
            row["mib"], row["label"], cell(row["downtime"]), cell(row["gap"]), cell(row["split"]),
            cell(row["total"], "%.1f"), " / ".join(cell(p, "%.2f") for p in row["phases"]), mib,
            cell(row["move"] / (mib / link["raw TCP"]) if mib else None, "%.2f"), cell(ratio, "%.1f×")))
    table = "\n".join(lines)
    print(table)
    plot(rows, os.path.join(ROOT, "docs", "benchmarks-methods.png"))
    write_section("Migration methods: downtime by memory size", (
        "`make bench` (`python bench/methods.py %s`) on %s, %.0f min: node1 -> node2 on the lab fabric (one machine,\n"
        "2 cores). Baselines measured in the same run, memory to memory between the two hosts: %s.\n\n"
        "- *CRIU page server*: CRIU by itself, the floor: `criu dump --page-server` from node1 straight into\n"
        "  `criu page-server` on node2 (plain, or with `--tls` and a one-time certificate), the other images\n"
        "  copied beside the pages, `criu restore` there; the state is checked after it like Ferry's.\n"
        "- *criu*: a process tree holding N MiB of random bytes and a counter; a client polls the counter on\n"
        "  both hosts every 5 ms (client gap: last answer on the source to first on the target). Every run\n"
        "  checks the bytes' SHA-256 is unchanged and the count went on. *stream* goes CRIU to CRIU over\n"
        "  CRIU's TLS page server with one-time credentials (Ferry's default where both CRIUs have TLS);\n"
        "  *stream over the SSH link* is `migrate_stream_transport: ssh`, the resumable relays through OpenSSH.\n"
        "- *redis (criu)*: Redis itself as a criu-engine tree, with the dataset below, moved by each method in\n"
        "  turn (node1 -> node2 -> node1 -> node2); after every move its `DEBUG DIGEST` must be unchanged.\n"
        "- *CRIU lazy pages*: CRIU's own post-copy, the floor for Ferry's: `criu dump --lazy-pages` on node1\n"
        "  (plain, or `--tls` with a one-time certificate), the other images copied over OpenSSH, and on node2\n"
        "  `criu lazy-pages` fetching from node1 while `criu restore --lazy-pages` runs the tree; its split\n"
        "  window runs from the restore's end to the dump's exit, when the last page has gone.\n"
        "- *podman*: Redis holding about N MiB (N × 1024 keys of 1 KiB of random bytes), moved by\n"
        "  stop_and_copy (this kernel tracks no dirty memory, so podman's pre-copy is out); Ferry streams\n"
        "  podman's export archive while podman writes it, so its checkpoint and transfer phases overlap.\n"
        "  *By hand* is `podman container checkpoint --export --compress zstd`,\n"
        "  `scp`, `podman container restore --import`, timed from the checkpoint to the restore's end.\n"
        "- *Checkpoint / transfer / restore* are the phases of the record (for the baselines: dump, copy,\n"
        "  restore); *total* adds the preflight and the finalisation, mostly Ansible's round trips.\n"
        "- Downtime is Ferry's record: from the freeze to running on the target. No Ansible round trip falls\n"
        "  inside it: the checkpoint delivers the bundle itself to a restore already waiting on the target.\n\n"
        "Against the goals of issue #16 (fastest encrypted transport in this run: %.0f MiB/s):\n\n%s\n\n%s\n\n"
        "![downtime by memory size](benchmarks-methods.png)\n"
    ) % (" ".join(str(s) for s in SIZES), time.strftime("%Y-%m-%d"), seconds / 60,
         ", ".join("%s **%.0f MiB/s**" % item for item in link.items()),
         link["OpenSSH " + SSH_CIPHER], goals(rows, link), table))


def goals(rows, link):
    """Issue #16's goals that this run measures, each with the figure that decides it and, when not met,
    the phase that takes the time."""
    def of(label, mib):
        found = [r for r in rows if r["label"] == label and r["mib"] == mib]
        return found[0] if found else None

    def slowest(row):
        named = [(p, n) for p, n in zip(row["phases"], ("checkpoint", "transfer", "restore")) if p is not None]
        return "%s %.2f s" % max(named)[::-1] if named else ""

    lines = []
    for mib in (1024, 4096):
        floor = of("CRIU page server --tls", mib)
        for method in ("stop_and_copy", "stream"):
            row = of("criu " + method, mib)
            if floor and row:
                ratio = row["downtime"] / floor["downtime"]
                lines.append("- criu %s downtime at %d MiB ≤ 1.25 × CRIU's TLS page server (%.2f s): %s, %.2f s = %.1f×%s.  " % (
                    method, mib, floor["downtime"], "met" if ratio <= 1.25 else "not met", row["downtime"], ratio,
                    "" if ratio <= 1.25 else " (slowest phase: %s)" % slowest(row)))
    post = [r for r in rows if r["label"].endswith("post_copy")]

    def lazy(mib, what):
        found = [(label, of(label, mib)) for label in ("CRIU lazy pages", "CRIU lazy pages --tls")]
        return ", ".join("%s %.2f s" % (label[5:], row[what]) for label, row in found if row)

    if post:
        worst = max(post, key=lambda r: r["downtime"])
        lines.append("- Post-copy downtime ≤ 0.3 s at every size: %s (worst %.3f s, %s at %d MiB; CRIU's own: %s).  " % (
            "met" if worst["downtime"] <= 0.3 else "not met", worst["downtime"], worst["label"], worst["mib"], lazy(worst["mib"], "downtime")))
        fastest = max(value for name, value in link.items() if name != "raw TCP")
        windows = [(r["split"] / (1.5 * r["mib"] / fastest), r) for r in post if r["split"]]
        if windows:
            ratio, row = max(windows, key=lambda w: w[0])
            lines.append("- Post-copy split window ≤ 1.5 × MiB / %.0f MiB/s: %s (worst %s at %d MiB: %.1f s against %.1f s; "
                         "CRIU's own: %s).  " % (fastest, "met" if ratio <= 1 else "not met", row["label"], row["mib"], row["split"],
                                                 1.5 * row["mib"] / fastest, lazy(row["mib"], "split")))
    ferry, hand = of("podman Ferry", 1024), of("podman by hand", 1024)
    if ferry and hand:
        ratio = hand["downtime"] / ferry["downtime"]
        floor, allowed = (ferry["runtime_dump"] or 0) + ferry["phases"][2], hand["downtime"] / 3
        mib = ferry["bytes"] / 1048576
        left = "leaving %.2f s to move %.0f MiB: %.0f MiB/s" % (allowed - floor, mib, mib / (allowed - floor)) if allowed > floor else "nothing left"
        lines.append("- Podman at 1 GiB, downtime ≥ 3× lower than by hand: %s, %.1f× (%.1f s against %.1f s; checkpoint and transfer, "
                     "overlapping, %.2f s, restore %.2f s). Runc's dump (%.2f s, podman's own figure) and podman's restore take "
                     "%.1f s of the %.1f s the goal allows, %s (OpenSSH carried %.0f MiB/s in this run).  "
                     % ("met" if ratio >= 3 else "not met", ratio, ferry["downtime"], hand["downtime"], max(ferry["phases"][:2]),
                        ferry["phases"][2], ferry["runtime_dump"] or 0, floor, allowed, left, link["OpenSSH " + SSH_CIPHER]))
    return "\n".join(lines) or "- (no size in this run decides a goal: the goals are at 1 GiB and 4 GiB)"


if __name__ == "__main__":
    main()
