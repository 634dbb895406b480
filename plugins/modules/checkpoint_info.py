#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_info
short_description: Inspect checkpoint bundles, verify their checksums and read their CRIU images
version_added: 0.1.0
description:
  - Lists the bundles in O(images_dir), or one bundle with O(checkpoint_id).
  - For each, returns the manifest, whether every file matches its size and SHA-256, and what the CRIU
    images say, read with pycriu; the process tree (pid, parent, session) and the size of the dumped memory.
author: Ferry developers (@ferry-migrate)
options:
  checkpoint_id:
    description: Only this bundle.
    type: str
  verify:
    description: Compute every file's SHA-256 (reads the whole bundle).
    type: bool
    default: true
extends_documentation_fragment:
  - ferry.migrate.common.images
attributes:
  check_mode:
    support: full
    description: The module changes nothing.
"""

EXAMPLES = r"""
- name: Is the checkpoint intact?
  ferry.migrate.checkpoint_info:
    checkpoint_id: redis-1
  register: info

- name: Fail unless it verifies
  ansible.builtin.assert:
    that: info.checkpoints[0].verified
    fail_msg: "{{ info.checkpoints[0].problems }}"
"""

RETURN = r"""
checkpoints:
  description: One entry per bundle.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Bundle name.
      type: str
    path:
      description: Bundle directory.
      type: str
    manifest:
      description: The manifest, or null when it is unreadable.
      type: dict
    verified:
      description: Every file matches the manifest.
      type: bool
    problems:
      description: What does not match.
      type: list
      elements: str
    processes:
      description: The dumped process tree (V(pid), V(ppid), V(sid)), as pids inside the checkpoint.
      type: list
      elements: dict
    memory_bytes:
      description: Bytes of dumped memory pages.
      type: int
"""

import io
import os
import re
import tarfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _criu

_PAGES = re.compile(r"^pages-\d+\.img\Z")


def _image_name(member_name):
    """A CRIU image's name inside a checkpoint archive: under checkpoint/ in podman's, at the top of
    the docker engine's; None for anything else (rootfs, configuration)."""
    for prefix in ("checkpoint/", "./"):
        if member_name.startswith(prefix) and "/" not in member_name[len(prefix):]:
            return member_name[len(prefix):]
    return None


def criu_images(path):
    """Read pstree.img and page sizes from a bundle: loose CRIU images, or inside podman's or the
    docker engine's archive."""
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
    processes = None
    if pstree is not None and _criu.HAS_PYCRIU:
        entries = _criu.pycriu.images.load(io.BytesIO(pstree))["entries"]
        processes = [{"pid": e["pid"], "ppid": e["ppid"], "sid": e.get("sid")} for e in entries]
    return processes, memory


def describe(images_dir, checkpoint_id, verify):
    path = _bundle.final_path(images_dir, checkpoint_id)
    entry = {"id": checkpoint_id, "path": path, "manifest": None, "verified": False, "problems": [],
             "processes": None, "memory_bytes": None}
    try:
        entry["manifest"] = _bundle.load_manifest(path)
    except _bundle.BundleError as exc:
        entry["problems"] = [str(exc)]
        return entry
    if verify:
        entry["problems"] = _bundle.verify(path, entry["manifest"])
        entry["verified"] = not entry["problems"]
    entry["processes"], entry["memory_bytes"] = criu_images(path)
    return entry


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checkpoint_id=dict(type="str"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
            verify=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    images_dir = module.params["images_dir"]
    if module.params["checkpoint_id"] is not None:
        try:
            ids = [_bundle.check_id(module.params["checkpoint_id"])]
        except _bundle.BundleError as exc:
            module.fail_json(msg="checkpoint_id: %s" % exc)
    else:
        ids = sorted(name for name in (os.listdir(images_dir) if os.path.isdir(images_dir) else [])
                     if not name.startswith(".") and os.path.isdir(os.path.join(images_dir, name)))
    module.exit_json(changed=False, checkpoints=[describe(images_dir, i, module.params["verify"]) for i in ids])


if __name__ == "__main__":
    main()
