# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Receiving end of a checkpoint transfer.

Module ferry.migrate.transfer_access installs this file on the target as a standalone script and
makes it the forced command of a one-time SSH key, so the key can do nothing but hand this program
one checkpoint bundle. It therefore depends on the standard library only, and trusts nothing it reads.

Protocol on the SSH channel (sender -> receiver unless noted):
  1. one JSON line: {"manifest": {...}, "compress": "none" | "zstd", "probe": bool}
  2. receiver -> sender, one JSON line: {"have": bool}; the transfer ends there when the bundle is
     already complete on the target, or when the sender only probes
  3. for each manifest file, in order: chunks of <4-byte big-endian length><data>, ended by length 0
  4. receiver -> sender, one JSON line: {"ok": bool, "bytes": int, "error": str}
Files are written under <images_dir>/.partial-<id>, verified against the manifest's sizes and
SHA-256, and renamed to <images_dir>/<id> only when every one matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys

MAX_HEADER = 1 << 20
MAX_CHUNK = 16 << 20
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,254}$")


class ReceiveError(Exception):
    pass


def _read_exact(stream, size):
    data = bytearray()
    while len(data) < size:
        block = stream.read(size - len(data))
        if not block:
            raise ReceiveError("stream ended early")
        data += block
    return bytes(data)


def _check_manifest(manifest, checkpoint_id):
    if not isinstance(manifest, dict) or manifest.get("id") != checkpoint_id:
        raise ReceiveError("this key may only deliver checkpoint %s" % checkpoint_id)
    files = manifest.get("files")
    if not isinstance(files, list):
        raise ReceiveError("manifest has no file list")
    names = set()
    for entry in files:
        if not isinstance(entry, dict):
            raise ReceiveError("bad manifest entry")
        name, size, digest = entry.get("name"), entry.get("size"), entry.get("sha256")
        if not isinstance(name, str) or not _FILE.match(name) or name == "manifest.json" or name in names:
            raise ReceiveError("bad file name %r" % (name,))
        if not isinstance(size, int) or size < 0:
            raise ReceiveError("bad size for %s" % name)
        if not isinstance(digest, str) or not re.match(r"^[0-9a-f]{64}$", digest):
            raise ReceiveError("bad sha256 for %s" % name)
        names.add(name)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete(path, manifest):
    """The final bundle exists, has this manifest and verifies."""
    try:
        with open(os.path.join(path, "manifest.json"), encoding="utf-8") as handle:
            if json.load(handle) != manifest:
                return False
    except (OSError, ValueError):
        return False
    return all(os.path.isfile(os.path.join(path, e["name"])) and os.path.getsize(os.path.join(path, e["name"])) == e["size"]
               and _sha256(os.path.join(path, e["name"])) == e["sha256"] for e in manifest["files"])


def _receive_file(stream, path, entry, compress):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    unzstd = None
    with os.fdopen(fd, "wb") as out:
        digest = hashlib.sha256()
        if compress == "zstd":
            unzstd = subprocess.Popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=out)  # pylint: disable=consider-using-with
        received = 0
        while True:
            (length,) = struct.unpack(">I", _read_exact(stream, 4))
            if length == 0:
                break
            if length > MAX_CHUNK:
                raise ReceiveError("chunk of %d bytes is too large" % length)
            data = _read_exact(stream, length)
            received += length
            if unzstd:
                unzstd.stdin.write(data)
            else:
                if received > entry["size"]:
                    raise ReceiveError("%s is larger than its manifest says" % entry["name"])
                digest.update(data)
                out.write(data)
        if unzstd:
            unzstd.stdin.close()
            if unzstd.wait() != 0:
                raise ReceiveError("zstd could not decompress %s" % entry["name"])
        out.flush()
        os.fsync(out.fileno())
    if os.path.getsize(path) != entry["size"]:
        raise ReceiveError("%s has %d bytes, manifest says %d" % (entry["name"], os.path.getsize(path), entry["size"]))
    if (digest.hexdigest() if not unzstd else _sha256(path)) != entry["sha256"]:
        raise ReceiveError("%s does not match its sha256" % entry["name"])
    return received


def receive(images_dir, checkpoint_id, stream, reply):
    """Receive one bundle; returns the reply dict that was sent last."""
    if not _ID.match(checkpoint_id) or ".." in checkpoint_id:
        raise ReceiveError("invalid checkpoint id")
    header = json.loads(stream.readline(MAX_HEADER) or b"null")
    if not isinstance(header, dict):
        raise ReceiveError("no header")
    manifest, compress = header.get("manifest"), header.get("compress", "none")
    _check_manifest(manifest, checkpoint_id)
    if compress not in ("none", "zstd"):
        raise ReceiveError("unknown compression %r" % (compress,))
    final = os.path.join(images_dir, checkpoint_id)
    have = _complete(final, manifest)
    reply({"have": have})
    if have or header.get("probe"):
        return {"have": have}
    partial = os.path.join(images_dir, ".partial-" + checkpoint_id)
    if os.path.lexists(partial):
        shutil.rmtree(partial)
    os.makedirs(partial, mode=0o700)
    received = 0
    try:
        for entry in manifest["files"]:
            received += _receive_file(stream, os.path.join(partial, entry["name"]), entry, compress)
        with open(os.open(os.path.join(partial, "manifest.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                  "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    result = {"ok": True, "bytes": received}
    reply(result)
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = sys.stdout

    def reply(message):
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        receive(argv[0], argv[1], sys.stdin.buffer, reply)
    except Exception as exc:  # pylint: disable=broad-except
        reply({"ok": False, "error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
