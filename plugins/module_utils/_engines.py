# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine registry: every engine by name, what each can do, and the arguments modules share."""

from __future__ import annotations

import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _engine, _host
from ansible_collections.ferry.migrate.plugins.module_utils._engine import Engine, criu_for

ENGINES = ("podman", "docker", "criu", "lxc")


def engine_class(name: str) -> type[Engine]:
    """The driver of engine ``name``, imported when first asked for: a module run compiles the one
    engine it drives, not all four (AnsiballZ carries them all as source)."""
    # pylint: disable=import-outside-toplevel
    if name == "podman":
        from ansible_collections.ferry.migrate.plugins.module_utils._podman import PodmanEngine as engine
    elif name == "docker":
        from ansible_collections.ferry.migrate.plugins.module_utils._docker import DockerEngine as engine
    elif name == "criu":
        from ansible_collections.ferry.migrate.plugins.module_utils._tree import TreeEngine as engine
    elif name == "lxc":
        from ansible_collections.ferry.migrate.plugins.module_utils._lxc import LxcEngine as engine
    else:
        raise KeyError(name)
    return engine


# Shared by every module that touches checkpoints.
COMMON_ARGS = dict(
    engine=dict(type="str", choices=list(ENGINES), default="podman"),
    images_dir=dict(type="path", default="/var/lib/ferry"),
    criu_path=dict(type="path"),
)


def capabilities(name: str) -> dict[str, t.Any]:
    """What engine ``name`` can do (see ``Engine.capabilities``)."""
    return dict(engine_class(name).capabilities)


def engine_for(module: t.Any, name: str | None = None) -> Engine:
    """The engine ``name`` (by default the module's option ``engine``), working through ``module``."""
    return engine_class(name or module.params["engine"])(module, criu_for(module))


def run_container_info(module: t.Any) -> None:
    """Module ferry.migrate.container_info: one container or all, with the images, networks and engine capabilities."""
    _engine.check_container(module, "name")
    engine = engine_for(module)
    try:
        if module.params["name"]:
            found = engine.describe(module.params["name"])
            containers = [found] if found else []
        else:
            containers = engine.list()
        images, networks = engine.image_ids(), engine.network_names()
    except _engine.EngineError as exc:
        _engine.fail(module, "inspect", exc)
    module.exit_json(changed=False, containers=containers, images=images, networks=networks, capabilities=engine.capabilities,
                     host=_host.facts(module.params["images_dir"]))
