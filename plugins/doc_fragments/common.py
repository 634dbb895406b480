# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by the modules; their argument spec is module_utils/_engines.py's COMMON_ARGS."""

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
