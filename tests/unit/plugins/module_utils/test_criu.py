import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _criu


@pytest.mark.parametrize("text, expected", [
    ("Version: 4.2.1\n", (4, 2, 1)),
    ("Version: 3.17\nGitID: v3.17\n", (3, 17)),
    ("4.1.1-3", (4, 1, 1)),
    ("criu: command not found", None),
])
def test_parse_version(text, expected):
    assert _criu.parse_version(text) == expected


def test_version_gate():
    assert _criu.parse_version("Version: 4.1.1") < _criu.MIN_VERSION <= _criu.parse_version("Version: 4.2.1")
    assert _criu.version_string((4, 2, 1)) == "4.2.1"
