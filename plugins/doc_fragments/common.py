# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by the modules; their argument spec is module_utils/_engines.py's COMMON_ARGS (the engine registry)."""

    IMAGES = r"""
options:
  images_dir:
    description: Private directory holding checkpoint bundles (the same path on every host).
    type: path
    default: /var/lib/ferry
"""

    CRIU = r"""
options:
  criu_path:
    description: CRIU binary; found as by M(ferry.migrate.criu_info) when unset.
    type: path
"""

    # The placement filters' shared constraints (plugin_utils/_planner.py).
    PLACEMENT = r"""
options:
  headroom:
    description: A target needs free memory of RSS times this.
    type: float
    default: 1.2
  max_per_source:
    description: Concurrent migrations out of one host.
    type: int
    default: 2
  max_per_target:
    description: Concurrent migrations into one host.
    type: int
    default: 2
  anti_affinity_label:
    description: Containers with the same value of this label never share a host.
    type: str
    default: ferry.anti-affinity
  pinned_label:
    description: Containers with this label (any value but V(false)) never move.
    type: str
    default: ferry.pinned
"""
