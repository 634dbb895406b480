# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ferry's checkpoint wire protocol, both ends.

Module ferry.migrate.transfer_access installs this file on a host as a standalone script and makes it
the forced command of a one-time SSH key, so the key can do nothing but deliver (``receive``) or hand
out (``send``, for a relay through the controller) one checkpoint bundle (receiving, also the bundles
of its pre-copy iterations, ``<id>.pre-<n>``). It therefore depends on the
standard library only and trusts nothing it reads. Module ferry.migrate.transfer runs the same ``send``
into an OpenSSH client, which encrypts and authenticates everything (no cryptography of Ferry's own).

Protocol on the SSH channel (sender -> receiver unless noted):
  0. receiver -> sender, one JSON line {"ready": true} as it starts: the session is up, before the
     sender has anything to send (a checkpoint opens its connection before the freeze)
  1. one JSON line: {"manifest": {...}, "compress": "none"|"zstd", "probe": bool, "until_restored": bool}; or {"link": true},
     answered {"link": true}, after which the session carries the checkpoint's page link (see _relay),
     spliced to the unix socket where the target's end of that link listens (link_socket)
  2. receiver -> sender, one JSON line: {"have": bool}; the transfer ends there when the bundle is
     already complete on the target, or when the sender only probes
  3. for each manifest file, in order, records <4-byte big-endian length><data> ended by an empty one,
     then one record holding the SHA-256 (64 hex digits) of the file as the sender read it
  3b. when the header's manifest streams files, one record holding the manifest the bundle keeps
  4. receiver -> sender, one JSON line: {"ok": bool, "bytes": int, "data_path": "ssh", "error": str};
     with "until_restored", where a restore waits on the target for this bundle, the receiver then
     stays until that restore ends, so the sender's end of the session closes with the restore over
The manifest may leave out the files' SHA-256: a checkpoint sends its bundle as CRIU wrote it and
hashes it on the way, in one read. It may also give a file's size as null: the file is streamed, sent
from the pipe its writer (podman's export) fills while the writer runs, and the closing manifest (3b),
made once the writer is done, gives its size; it must name the same files, with the sizes received.
Files are written under <images_dir>/.partial-<id>, each checked as it streams against the sender's
SHA-256 and the manifest's size and SHA-256 (where it has one), and renamed to <images_dir>/<id>, with the SHA-256 in its manifest, only when every one matches.
The bundle then holds a stamp (.verified) that lets a restore in this boot skip hashing it again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

MAX_HEADER = 1 << 20
CHUNK = 1 << 20
MAX_CHUNK = 16 << 20
_LENGTH = struct.Struct(">I")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,254}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
MANIFEST = "manifest.json"
RESTORE_WAIT = 600  # at most, seconds a receiver stays for the restore of what it delivered
# Beside the manifest; no file of a bundle can have this name (they start with a letter or digit).
STAMP = ".verified"


class WireError(Exception):
    pass


def valid_id(checkpoint_id):
    """A checkpoint id names a directory: letters, digits, ``_.-``, no leading dot, no slash."""
    return isinstance(checkpoint_id, str) and bool(_ID.match(checkpoint_id)) and ".." not in checkpoint_id


def pre_copy_id(checkpoint_id, iteration):
    """The bundle of a pre-copy's ``iteration`` (1, 2, ...): CRIU's pre-dump, sent while the tree runs."""
    return "%s.pre-%d" % (checkpoint_id, iteration)


def of_checkpoint(bundle_id, checkpoint_id):
    """``bundle_id`` is the checkpoint's own bundle or one of its pre-copy iterations."""
    return valid_id(bundle_id) and bool(re.match(re.escape(checkpoint_id) + r"(\.pre-[1-9][0-9]{0,3})?\Z", bundle_id))


def valid_file_name(name):
    return isinstance(name, str) and bool(_FILE.match(name)) and name != "manifest.json"


# ---- records -------------------------------------------------------------------------------------

def record(payload):
    """One record as bytes (the sender writes the length and the payload apart, to spare a copy)."""
    return _LENGTH.pack(len(payload)) + payload


def with_end_mark(chunks):
    """A file's chunks followed by the empty chunk that ends it on the wire."""
    yield from chunks
    yield b""


def file_chunks(path, compress):
    """A file's content in chunks, compressed with zstd on the way when asked."""
    if compress == "zstd":
        with subprocess.Popen(["zstd", "-q", "-1", "-T0", "-c", path], stdout=subprocess.PIPE) as proc:
            yield from iter(lambda: proc.stdout.read(CHUNK), b"")
            if proc.wait() != 0:
                raise WireError("zstd failed on %s" % path)
    else:
        with open(path, "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")


def _read_exact(stream, size):
    first = stream.read(size)  # buffered streams return it whole, without a copy here
    if len(first) == size:
        return first
    data = bytearray(first)
    while len(data) < size:
        block = stream.read(size - len(data))
        if not block:
            raise WireError("stream ended early")
        data += block
    return bytes(data)


def widen_pipe(fd):
    """Give a pipe (an SSH session's input or output) a buffer of one chunk instead of 64 KiB, so a chunk
    crosses in one wake-up instead of sixteen (a 1 GiB transfer on the two-core lab: 4.9 s against
    5.7 s). A descriptor that is no pipe, or a limit that refuses, leaves it as it is."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except OSError:
        pass


def read_record(stream):
    (length,) = _LENGTH.unpack(_read_exact(stream, 4))
    if length > MAX_CHUNK:
        raise WireError("record of %d bytes is out of bounds" % length)
    return _read_exact(stream, length)


def read_chunks(stream):
    """Chunks of one file from a record stream, up to its empty end record."""
    while True:
        data = read_record(stream)
        if not data:
            return
        yield data


def kept_chunks(path, pipe_fd):
    """A streamed file's content from the pipe ``pipe_fd`` (at ``path``, opened by its owner) as its
    writer fills it, kept beside as it passes and put in the pipe's place, under its name, once every
    writer has closed it."""
    keep = os.path.join(os.path.dirname(path), ".streamed-" + os.path.basename(path))
    with open(pipe_fd, "rb", closefd=False) as pipe, \
            open(os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "wb") as out:
        widen_pipe(pipe.fileno())
        for chunk in iter(lambda: pipe.read(CHUNK), b""):
            out.write(chunk)
            yield chunk
    os.rename(keep, path)


def send_file(path, compress, write, pipe_fd=None):
    """One file on the wire: its records, the end mark and the SHA-256 of its content, taken as the
    chunks go out (hashing chunk n overlaps writing it: both release the GIL), so the file is read
    once; with ``pipe_fd``, a streamed file (kept_chunks). Returns (bytes written, hex SHA-256)."""
    if pipe_fd is not None and compress != "none":
        raise WireError("a streamed file is sent as it is written, without compression")
    sent, digest = 0, hashlib.sha256()
    with ThreadPoolExecutor(max_workers=1) as hasher:
        for chunk in with_end_mark(kept_chunks(path, pipe_fd) if pipe_fd is not None else file_chunks(path, compress)):
            hashed = hasher.submit(digest.update, chunk) if compress == "none" else None
            write(_LENGTH.pack(len(chunk)))  # apart from the payload, which is not copied again
            write(chunk)
            sent += 4 + len(chunk)
            if hashed:
                hashed.result()
    hexdigest = sha256_file(path) if compress == "zstd" else digest.hexdigest()  # zstd read the file itself
    write(record(hexdigest.encode("ascii")))
    return sent + 4 + len(hexdigest), hexdigest


# ---- sending -------------------------------------------------------------------------------------

def _answer(readline):
    line = readline()
    if not line:
        raise WireError("the target closed the transfer without a reason")
    message = json.loads(line)
    if message.get("ok") is False:
        raise WireError("the target refused the checkpoint: %s" % message.get("error"))
    return message


def await_ready(readline):
    """The receiver's first line: the session is established and the forced command runs."""
    line = readline()
    try:
        ready = json.loads(line).get("ready") if line else None
    except (ValueError, AttributeError):
        ready = None
    if ready is not True:
        raise WireError("the target did not start the receiver%s" % (": %r" % line[:200] if line else ""))


def send(bundle_dir, manifest, write, readline, compress="none", probe=False, pipes=None, final=None, until_restored=False):
    """Run the sending side over a channel (``write`` bytes, ``readline`` -> bytes). A manifest that
    streams files (size None) needs ``pipes`` (name: the read end of the pipe in its place) and
    ``final``: called once every file has gone, it returns the manifest the bundle keeps, sent last.
    ``until_restored`` asks the receiver to stay until a restore waiting for the bundle is over.

    Returns {"have", "sent_bytes", "data_path", "sha256": {file name: hex SHA-256 as sent}}.
    """
    write(json.dumps({"manifest": manifest, "compress": compress, "probe": probe, "until_restored": until_restored}).encode() + b"\n")
    answer = _answer(readline)
    if answer["have"] or probe:
        return {"have": answer["have"], "sent_bytes": 0, "data_path": None}
    sent, digests = 0, {}
    try:
        for entry in manifest["files"]:
            size, digests[entry["name"]] = send_file(os.path.join(bundle_dir, entry["name"]), compress, write,
                                                     (pipes or {})[entry["name"]] if entry["size"] is None else None)
            sent += size
        if any(entry["size"] is None for entry in manifest["files"]):
            write(record(json.dumps(final()).encode()))
    except OSError:
        # The receiver hung up: its reply says why.
        _answer(readline)
        raise
    answer = _answer(readline)
    return {"have": False, "sent_bytes": sent, "data_path": answer.get("data_path"), "sha256": digests}


# ---- receiving -----------------------------------------------------------------------------------

def _check_manifest(manifest, checkpoint_id, streams=False):
    """``streams``: a header's manifest, whose streamed files have no size yet."""
    if not isinstance(manifest, dict) or not of_checkpoint(manifest.get("id"), checkpoint_id):
        raise WireError("this key may only deliver checkpoint %s" % checkpoint_id)
    files = manifest.get("files")
    if not isinstance(files, list):
        raise WireError("manifest has no file list")
    names = set()
    for entry in files:
        if not isinstance(entry, dict):
            raise WireError("bad manifest entry")
        name, size, digest = entry.get("name"), entry.get("size"), entry.get("sha256")
        if not valid_file_name(name) or name in names:
            raise WireError("bad file name %r" % (name,))
        if not (size is None and streams) and (not isinstance(size, int) or size < 0):
            raise WireError("bad size for %s" % name)
        if digest is not None and not (isinstance(digest, str) and _SHA256.match(digest)):
            raise WireError("bad sha256 for %s" % name)
        names.add(name)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _without_sha256(manifest):
    return dict(manifest, files=[{k: v for k, v in e.items() if k != "sha256"} for e in manifest["files"]])


def _complete(path, manifest):
    """The final bundle exists, has this manifest (the SHA-256 of its files where it gives them) and verifies."""
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as handle:
            have = json.load(handle)
        if have != manifest and _without_sha256(have) != manifest:
            return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return all(os.path.isfile(os.path.join(path, e["name"])) and os.path.getsize(os.path.join(path, e["name"])) == e["size"]
               and sha256_file(os.path.join(path, e["name"])) == e["sha256"] for e in have["files"])


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _stats(path, names):
    return {name: [st.st_size, st.st_mtime_ns, st.st_ino] for name in names for st in [os.lstat(os.path.join(path, name))]}


def stamp(path, names):
    """Vouch that the files ``names`` of the bundle at ``path`` matched the SHA-256 in its manifest,
    just now: stamp_holds is true until this host restarts (a crash may lose what the page cache
    held) or any of them, or the manifest, is written again."""
    boot = _boot_id()
    if boot:
        with open(os.open(os.path.join(path, STAMP), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600),
                  "w", encoding="utf-8") as handle:
            json.dump({"boot_id": boot, "files": _stats(path, list(names) + [MANIFEST])}, handle)


def stamp_holds(path, names):
    try:
        with open(os.path.join(path, STAMP), encoding="utf-8") as handle:
            vouched = json.load(handle)
        return vouched["boot_id"] == _boot_id() and vouched["files"] == _stats(path, list(names) + [MANIFEST])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _receive_file(chunks, path, entry, compress):
    """Write one file from its chunks; returns (bytes received, hex SHA-256 of its content)."""
    # No fsync: nothing depends on these bytes surviving a crash of this host. The source keeps its
    # stopped copy until the restore here succeeded, and a restore after a restart hashes the bundle again.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        digest = hashlib.sha256()
        unzstd = None
        if compress == "zstd":
            unzstd = subprocess.Popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=out)  # pylint: disable=consider-using-with
        write = unzstd.stdin.write if unzstd else out.write
        received = 0
        # Writing chunk n overlaps receiving and hashing chunk n+1 (each releases the GIL):
        # the page cache is the slowest stage here.
        with ThreadPoolExecutor(max_workers=1) as writer:
            pending = None
            for data in chunks:
                received += len(data)
                if not unzstd:
                    if entry["size"] is not None and received > entry["size"]:
                        raise WireError("%s is larger than its manifest says" % entry["name"])
                    digest.update(data)
                if pending:
                    pending.result()
                pending = writer.submit(write, data)
            if pending:
                pending.result()
        if unzstd:
            unzstd.stdin.close()
            if unzstd.wait() != 0:
                raise WireError("zstd could not decompress %s" % entry["name"])
    if entry["size"] is not None and os.path.getsize(path) != entry["size"]:
        raise WireError("%s has %d bytes, manifest says %d" % (entry["name"], os.path.getsize(path), entry["size"]))
    return received, (sha256_file(path) if unzstd else digest.hexdigest())


def link_socket(images_dir, checkpoint_id):
    """Where the target's end of a checkpoint's page link listens: a unix socket in the private images
    directory (hashed, as the path of a unix socket has at most 107 bytes)."""
    return os.path.join(images_dir, ".link-%s.sock" % hashlib.sha256(checkpoint_id.encode("utf-8")).hexdigest()[:24])


def _pump(src, dst, spliced):
    """Copy fd ``src`` to fd ``dst`` until the end, through one reused buffer, or with ``spliced`` in the
    kernel when ``src`` is a pipe (an SSH session's stdin is). Only that way: a splice from a socket
    into a pipe holds the pipe while it waits, and its reader would wait with it."""
    if spliced and hasattr(os, "splice"):  # Python 3.10 and later
        try:
            while os.splice(src, dst, CHUNK):
                pass
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: not a pipe; anything else ends the session
                return
    buffer = memoryview(bytearray(CHUNK))
    try:
        while True:
            size = os.readv(src, [buffer])
            if not size:
                return
            sent = 0
            while sent < size:
                sent += os.write(dst, buffer[sent:size])
    except OSError:
        return


def join_link(images_dir, checkpoint_id, in_fd, out_fd, reply):
    """Splice this session (``in_fd``, ``out_fd``) to the checkpoint's page link until either side ends."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(link_socket(images_dir, checkpoint_id))
    except OSError as exc:
        sock.close()
        raise WireError("no page link for checkpoint %s here: %s" % (checkpoint_id, exc)) from None
    reply({"link": True})  # the sender waits for it: nothing it sends is read ahead of the splice

    def inbound():
        _pump(in_fd, sock.fileno(), spliced=True)  # the pages, in both methods
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the session ended: so does this end of the link
        except OSError:
            pass

    threading.Thread(target=inbound, daemon=True).start()
    _pump(sock.fileno(), out_fd, spliced=False)  # acknowledgements and lazy-pages requests
    sock.close()
    return {"link": True}


def _closing_manifest(final, header, partial, checkpoint_id):
    """The manifest a streaming sender sent last: of the same bundle and files, with the sizes received."""
    _check_manifest(final, checkpoint_id)
    if final["id"] != header["id"] or sorted(e["name"] for e in final["files"]) != sorted(e["name"] for e in header["files"]):
        raise WireError("the closing manifest is not of the bundle that was sent")
    for entry in final["files"]:
        if os.path.getsize(os.path.join(partial, entry["name"])) != entry["size"]:
            raise WireError("%s has %d bytes, manifest says %d" % (entry["name"], os.path.getsize(os.path.join(partial, entry["name"])), entry["size"]))
    return final


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def wait_marker(images_dir, checkpoint_id):
    """The file a restore waiting for the checkpoint holds, with its pid, until the restore is over."""
    return os.path.join(images_dir, ".wait-" + checkpoint_id)


def await_restore(images_dir, checkpoint_id, seconds=RESTORE_WAIT):
    """Until the restore waiting for this checkpoint has ended (or there is none): the source's module
    then returns with the restore over, and the controller's first look at the restore finds it done."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(wait_marker(images_dir, checkpoint_id), encoding="ascii") as handle:
                pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            return
        if not alive(pid):
            return
        time.sleep(0.02)


def receive(images_dir, checkpoint_id, control, reply, link_fds=None):
    """Receive one bundle, or carry its page link over ``link_fds`` (the session's input and output);
    returns the reply dict that was sent last."""
    reply({"ready": True})
    if not valid_id(checkpoint_id):
        raise WireError("invalid checkpoint id")
    header = json.loads(control.readline(MAX_HEADER) or b"null")
    if not isinstance(header, dict):
        raise WireError("no header")
    if header == {"link": True} and link_fds is not None:
        return join_link(images_dir, checkpoint_id, link_fds[0], link_fds[1], reply)
    manifest, compress = header.get("manifest"), header.get("compress", "none")
    _check_manifest(manifest, checkpoint_id, streams=True)
    if compress not in ("none", "zstd"):
        raise WireError("unknown compression %r" % (compress,))
    final = os.path.join(images_dir, manifest["id"])
    have = _complete(final, manifest)
    reply({"have": have})
    if have or header.get("probe"):
        return {"have": have}
    partial = os.path.join(images_dir, ".partial-" + manifest["id"])
    if os.path.lexists(partial):
        shutil.rmtree(partial)
    os.makedirs(partial, mode=0o700)
    received, digests = 0, {}
    try:
        for entry in manifest["files"]:
            size, digest = _receive_file(read_chunks(control), os.path.join(partial, entry["name"]), entry, compress)
            if read_record(control) != digest.encode("ascii"):
                raise WireError("%s changed on the way: its SHA-256 differs from the sender's" % entry["name"])
            received += size
            digests[entry["name"]] = digest
        if any(entry["size"] is None for entry in manifest["files"]):
            manifest = _closing_manifest(json.loads(read_record(control)), manifest, partial, checkpoint_id)
        files = []
        for entry in manifest["files"]:
            if entry.get("sha256", digests[entry["name"]]) != digests[entry["name"]]:
                raise WireError("%s does not match its sha256" % entry["name"])
            files.append(dict(entry, sha256=digests[entry["name"]]))
        with open(os.open(os.path.join(partial, MANIFEST), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                  "w", encoding="utf-8") as handle:
            json.dump(dict(manifest, files=files), handle, indent=1, sort_keys=True)
        stamp(partial, [entry["name"] for entry in files])
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    result = {"ok": True, "bytes": received, "data_path": "ssh"}
    reply(result)
    if header.get("until_restored") and manifest["id"] == checkpoint_id:
        await_restore(images_dir, checkpoint_id)
    return result


# ---- the installed script ------------------------------------------------------------------------

def main(argv=None):
    """``receive IMAGES_DIR ID`` or ``send IMAGES_DIR ID`` (options as one JSON line on stdin)."""
    argv = sys.argv[1:] if argv is None else argv
    out, control = sys.stdout.buffer, sys.stdin.buffer

    def write(data):
        out.write(data)
        out.flush()

    if len(argv) != 3 or argv[0] not in ("receive", "send"):
        sys.stderr.write("usage: %s receive|send IMAGES_DIR CHECKPOINT_ID\n" % sys.argv[0])
        return 2
    mode, images_dir, checkpoint_id = argv
    for fd in (control.fileno(), out.fileno()):
        widen_pipe(fd)
    try:
        if mode == "receive":
            receive(images_dir, checkpoint_id, control, lambda message: write(json.dumps(message).encode() + b"\n"),
                    (control.fileno(), out.fileno()))
        else:
            if not valid_id(checkpoint_id):
                raise WireError("invalid checkpoint id")
            options = json.loads(control.readline(MAX_HEADER) or b"{}")
            await_ready(control.readline)  # the receiver's, relayed by the controller
            bundle_dir = os.path.join(images_dir, checkpoint_id)
            with open(os.path.join(bundle_dir, MANIFEST), encoding="utf-8") as handle:
                manifest = json.load(handle)
            send(bundle_dir, manifest, write, control.readline, options.get("compress", "none"), bool(options.get("probe")))
    except Exception as exc:  # pylint: disable=broad-except
        if mode == "receive":
            write(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
        sys.stderr.write("%s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
