# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checkpoint bundles: one private, flat directory per checkpoint in the images directory.

A bundle is written under ``.partial-<id>`` and renamed to ``<id>`` only once complete, so a bundle
that exists under its final name is whole. ``manifest.json`` lists every other file with its size and
SHA-256; nothing is restored from a bundle that does not verify against it. A bundle hashed in this
boot (as it was checkpointed, sent or received) holds a stamp that spares a second read of every
file while none of them changed (_wire.stamp). Bundles hold process memory, secrets included:
directories are 0700 and files 0600.

A pre-copy (the criu engine's ``pre_copy``) makes a chain: its iterations are bundles of their own,
``<id>.pre-1``, ``<id>.pre-2``... (``pre_copy_id``), each naming the one before as its ``parent``
with the digest of that bundle's file list, and the final bundle names the last one. CRIU finds a
parent's pages through a ``parent`` symbolic link in the bundle, ``../<parent id>``: the only thing
in a bundle that is not a listed file, and only to the parent its manifest names (``link_chain``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import typing as t

# The receiving end is installed alone on hosts, so the naming rules live there.
from ansible_collections.ferry.migrate.plugins.module_utils import _criu, _wire
from ansible_collections.ferry.migrate.plugins.module_utils._files import write_json_atomic

MANIFEST = _wire.MANIFEST
PARENT = "parent"  # CRIU's link to the parent images (criu/include/image.h, CR_PARENT_LINK)
FORMAT = 1
_PAGES = re.compile(r"^pages-\d+\.img\Z")


class BundleError(Exception):
    """A bundle or its manifest is not as it must be; ``problems`` lists each file that is not."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


def check_id(checkpoint_id: str) -> str:
    """A checkpoint id names a directory: letters, digits, ``_.-``, no leading dot, no slash."""
    if not _wire.valid_id(checkpoint_id):
        raise BundleError("checkpoint_id %r must be 1-128 of [A-Za-z0-9_.-], starting with a letter or digit"
                          % (checkpoint_id,))
    return checkpoint_id


def pre_copy_id(checkpoint_id: str, iteration: int) -> str:
    return check_id(_wire.pre_copy_id(check_id(checkpoint_id), iteration))


def check_file_name(name: str) -> str:
    if not _wire.valid_file_name(name):
        raise BundleError("bundle file name %r is not a plain file name" % (name,))
    return name


def final_path(images_dir: str, checkpoint_id: str) -> str:
    return os.path.join(images_dir, check_id(checkpoint_id))


def partial_path(images_dir: str, checkpoint_id: str) -> str:
    return os.path.join(images_dir, ".partial-" + check_id(checkpoint_id))


def credentials_path(images_dir: str, checkpoint_id: str) -> str:
    """Where a TLS stream's one-time credentials live on either host while it runs."""
    return os.path.join(images_dir, ".tls-" + check_id(checkpoint_id))


def make_private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def start(images_dir: str, checkpoint_id: str) -> str:
    """A fresh, empty partial directory (a leftover from an interrupted run is discarded)."""
    make_private_dir(images_dir)
    path = partial_path(images_dir, checkpoint_id)
    remove_tree(path)
    make_private_dir(path)
    return path


sha256_file = _wire.sha256_file  # one routine, in the file installed alone on hosts


def describe_files(path: str) -> list[dict[str, t.Any]]:
    """Name and size of each file of the bundle at ``path``."""
    files = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name in (MANIFEST, _wire.STAMP) or name == PARENT and os.path.islink(full):
            continue
        if not os.path.isfile(full) or os.path.islink(full):
            raise BundleError("bundle %s holds %s, which is not a regular file" % (path, name))
        check_file_name(name)
        os.chmod(full, 0o600)
        files.append({"name": name, "size": os.path.getsize(full)})
    return files


def header(images_dir: str, checkpoint_id: str, fields: dict[str, t.Any]) -> dict[str, t.Any]:
    """The partial bundle's manifest without its files' SHA-256: what a checkpoint sends ahead of the
    files, which it hashes on the way (finalise then gives the same manifest with them)."""
    return dict(fields, format=FORMAT, id=checkpoint_id, files=describe_files(partial_path(images_dir, checkpoint_id)))


def finalise(images_dir: str, checkpoint_id: str, fields: dict[str, t.Any], sha256: dict[str, str] | None = None) -> dict[str, t.Any]:
    """Write the partial bundle's manifest, with each file's SHA-256 (from ``sha256``, as the files were
    sent, or computed now), stamp it and give it its final name atomically."""
    partial = partial_path(images_dir, checkpoint_id)
    manifest = header(images_dir, checkpoint_id, fields)
    if sha256 is None:
        sha256 = {entry["name"]: sha256_file(os.path.join(partial, entry["name"])) for entry in manifest["files"]}
    unsent = sorted(entry["name"] for entry in manifest["files"] if entry["name"] not in sha256)
    if unsent:
        raise BundleError("bundle %s holds %s, which was not sent" % (partial, ", ".join(unsent)))
    manifest["files"] = [dict(entry, sha256=sha256[entry["name"]]) for entry in manifest["files"]]
    write_json_atomic(os.path.join(partial, MANIFEST), manifest)
    _wire.stamp(partial, [entry["name"] for entry in manifest["files"]])
    final = final_path(images_dir, checkpoint_id)
    remove_tree(final)
    os.rename(partial, final)
    _fsync_dir(images_dir)
    return manifest


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_manifest(path: str) -> dict[str, t.Any]:
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BundleError("no readable manifest in %s: %s" % (path, exc))
    validate_manifest(manifest)
    return manifest


def validate_manifest(manifest: t.Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError("manifest is not a Ferry manifest of format %d" % FORMAT)
    check_id(manifest.get("id"))
    files = manifest.get("files")
    if not isinstance(files, list):
        raise BundleError("manifest has no file list")
    for entry in files:
        if not isinstance(entry, dict):
            raise BundleError("manifest file entry %r is not a mapping" % (entry,))
        check_file_name(entry.get("name"))
        if not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise BundleError("manifest size of %s is invalid" % entry["name"])
        if not isinstance(entry.get("sha256"), str) or not re.match(r"^[0-9a-f]{64}\Z", entry["sha256"]):
            raise BundleError("manifest sha256 of %s is invalid" % entry["name"])


def verify(path: str, manifest: dict[str, t.Any] | None = None, rehash: bool = True) -> list[str]:
    """Problems found comparing the bundle with its manifest; empty when it verifies. Without
    ``rehash``, a bundle whose stamp holds is not hashed again."""
    try:
        manifest = manifest or load_manifest(path)
    except BundleError as exc:
        return [str(exc)]
    problems = []
    listed = {entry["name"] for entry in manifest["files"]}
    rehash = rehash or not _wire.stamp_holds(path, sorted(listed))
    present = set(os.listdir(path)) - {MANIFEST, _wire.STAMP}
    if PARENT in present and _parent_target(manifest) == _link_target(os.path.join(path, PARENT)):
        present.discard(PARENT)
    problems += ["unexpected file %s" % name for name in sorted(present - listed)]
    for entry in manifest["files"]:
        full = os.path.join(path, entry["name"])
        if not os.path.isfile(full):
            problems.append("missing file %s" % entry["name"])
        elif os.path.getsize(full) != entry["size"]:
            problems.append("%s has %d bytes, manifest says %d" % (entry["name"], os.path.getsize(full), entry["size"]))
        elif rehash and sha256_file(full) != entry["sha256"]:
            problems.append("%s does not match its sha256" % entry["name"])
    return problems


def verified(path: str) -> dict[str, t.Any]:
    """The manifest of the bundle at ``path`` once it and every file in it verify (hashed again unless
    its stamp holds)."""
    checkpoint_id = os.path.basename(path)
    try:
        manifest = load_manifest(path)
    except BundleError as exc:
        raise BundleError("checkpoint %s: %s" % (checkpoint_id, exc)) from None
    problems = verify(path, manifest, rehash=False)
    if problems:
        raise BundleError("checkpoint %s does not verify: %s" % (checkpoint_id, "; ".join(problems)), problems)
    return manifest


def parent_target(parent_id: str) -> str:
    """Where CRIU finds a parent bundle from its child (``parent_img``, the ``parent`` link): its sibling."""
    return "../" + check_id(parent_id)


def _parent_target(manifest: dict[str, t.Any]) -> str | None:
    parent = manifest.get("parent")
    return parent_target(parent["id"]) if isinstance(parent, dict) and _wire.valid_id(parent.get("id")) else None


def _link_target(path: str) -> str | None:
    return os.readlink(path) if os.path.islink(path) else None


def files_digest(manifest: dict[str, t.Any]) -> str:
    """The SHA-256 of a bundle's file list (names, sizes, SHA-256): what a child bundle pins its parent by."""
    listed = [[entry["name"], entry["size"], entry["sha256"]] for entry in manifest["files"]]
    return hashlib.sha256(json.dumps(listed, separators=(",", ":")).encode("utf-8")).hexdigest()


def parent_of(manifest: dict[str, t.Any]) -> dict[str, t.Any]:
    """A pre-copy iteration's bundle as its child's manifest names it."""
    return {"id": manifest["id"], "digest": files_digest(manifest)}


def verified_chain(images_dir: str, manifest: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """The manifests of the bundles a checkpoint's ``manifest`` stands on, nearest first: each one of
    its own pre-copy iterations, verified and matching the digest its child pins it by. Empty for a
    bundle without a parent."""
    chain, child, seen = [], manifest, {manifest["id"]}
    while child.get("parent") is not None:
        parent = child["parent"]
        if not isinstance(parent, dict) or parent.get("id") in seen or not _wire.of_checkpoint(parent.get("id"), manifest["id"]):
            raise BundleError("checkpoint %s names a parent that is not one of its pre-copy iterations: %r" % (child["id"], parent))
        seen.add(parent["id"])
        found = verified(final_path(images_dir, parent["id"]))
        if files_digest(found) != parent.get("digest"):
            raise BundleError("checkpoint %s: its parent %s is not the one it was dumped on (file list digest differs)"
                              % (child["id"], parent["id"]))
        chain.append(found)
        child = found
    return chain


def link_chain(images_dir: str, manifests: list[dict[str, t.Any]]) -> None:
    """CRIU's ``parent`` link in each bundle of a verified chain (a bundle, then its parents) to the
    next, as CRIU made them where the chain was dumped."""
    for manifest in manifests:
        if manifest.get("parent") is None:
            continue
        link, target = os.path.join(final_path(images_dir, manifest["id"]), PARENT), _parent_target(manifest)
        if _link_target(link) == target:
            continue
        if os.path.lexists(link):
            raise BundleError("bundle %s holds a %s that is not its link to %s" % (manifest["id"], PARENT, target))
        os.symlink(target, link)


def total_bytes(manifest: dict[str, t.Any]) -> int:
    return sum(entry["size"] for entry in manifest["files"])


def remove_tree(path: str) -> bool:
    """Remove a bundle directory without following links or crossing into other file systems."""
    if not os.path.lexists(path):
        return False
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return True
    if os.path.ismount(path):
        raise BundleError("refusing to delete %s: it is a mount point" % path)
    shutil.rmtree(path)
    return True


def pre_copy_ids(images_dir: str, checkpoint_id: str) -> list[str]:
    """The pre-copy iterations of a checkpoint that this host holds, whole or partial."""
    names = os.listdir(images_dir) if os.path.isdir(images_dir) else []
    bundles = {name[len(".partial-"):] if name.startswith(".partial-") else name for name in names}
    return sorted(name for name in bundles if name != checkpoint_id and _wire.of_checkpoint(name, checkpoint_id))


def leftovers(images_dir: str, checkpoint_id: str) -> list[str]:
    """What a checkpoint left here: the bundle, a partial one, a TLS stream's one-time credentials, and
    the same of its pre-copy iterations."""
    ids = [checkpoint_id] + pre_copy_ids(images_dir, checkpoint_id)
    return [path for each in ids for path in (where(images_dir, each) for where in (partial_path, credentials_path, final_path))
            if os.path.lexists(path)]


def remove(images_dir: str, checkpoint_id: str) -> bool:
    removed = [remove_tree(path) for path in leftovers(images_dir, checkpoint_id)]
    return any(removed)


def _image_name(member_name: str) -> str | None:
    """A CRIU image's name inside a checkpoint archive: under checkpoint/ in podman's, at the top of
    the docker engine's; None for anything else (rootfs, configuration)."""
    for prefix in ("checkpoint/", "./"):
        if member_name.startswith(prefix) and "/" not in member_name[len(prefix):]:
            return member_name[len(prefix):]
    return None


def criu_images(path: str) -> tuple[list[dict[str, t.Any]] | None, int | None]:
    """The process tree and the bytes of memory pages in a bundle: loose CRIU images, or inside
    podman's or the docker engine's archive."""
    pstree, memory = None, 0
    archive = os.path.join(path, "checkpoint.tar")
    if os.path.exists(archive):
        try:
            with tarfile.open(archive) as tar:
                for member in tar:
                    name = _image_name(member.name)
                    if name and _PAGES.match(name):
                        memory += member.size
                    elif name == "pstree.img":
                        pstree = tar.extractfile(member).read()
        except tarfile.TarError:
            return None, None
    else:
        for name in os.listdir(path):
            if _PAGES.match(name):
                memory += os.path.getsize(os.path.join(path, name))
        if os.path.exists(os.path.join(path, "pstree.img")):
            with open(os.path.join(path, "pstree.img"), "rb") as handle:
                pstree = handle.read()
    return (_criu.pstree_processes(pstree) if pstree is not None else None), memory


def describe(images_dir: str, checkpoint_id: str, checksums: bool) -> dict[str, t.Any]:
    """One bundle as checkpoint_info reports it; a bundle that does not verify says why in problems."""
    path = final_path(images_dir, checkpoint_id)
    entry = {"id": checkpoint_id, "path": path, "manifest": None, "verified": False, "problems": [],
             "processes": None, "memory_bytes": None}
    try:
        entry["manifest"] = load_manifest(path)
    except BundleError as exc:
        entry["problems"] = [str(exc)]
        return entry
    if checksums:
        entry["problems"] = verify(path, entry["manifest"])
        entry["verified"] = not entry["problems"]
    entry["processes"], entry["memory_bytes"] = criu_images(path)
    return entry


def inventory(images_dir: str, checkpoint_id: str | None, checksums: bool) -> list[dict[str, t.Any]]:
    """The bundle named, or every finished bundle in the images directory (partial ones start with a dot)."""
    if checkpoint_id is not None:
        ids = [check_id(checkpoint_id)]
    else:
        ids = sorted(name for name in (os.listdir(images_dir) if os.path.isdir(images_dir) else [])
                     if not name.startswith(".") and os.path.isdir(os.path.join(images_dir, name)))
    return [describe(images_dir, i, checksums) for i in ids]
