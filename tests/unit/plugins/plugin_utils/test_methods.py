"""How a migration moves memory, chosen from the hosts' CRIU facts, the engine, the route and the policy."""
import pytest

from ansible_collections.ferry.migrate.plugins.filter.migration_method import migration_method
from ansible_collections.ferry.migrate.plugins.plugin_utils import _methods
from ansible.errors import AnsibleFilterError

# This machine: userfaultfd works, soft-dirty does not.
THIS = {"features": {"lazy_pages": True, "mem_dirty_track": False}, "methods": ["post_copy", "stream", "stop_and_copy"]}
NO_UFFD = {"features": {"lazy_pages": False, "mem_dirty_track": False}, "methods": ["stream", "stop_and_copy"]}
SOFT_DIRTY = {"features": {"lazy_pages": True, "mem_dirty_track": True},
              "methods": ["post_copy", "pre_copy", "stream", "stop_and_copy"]}


def test_auto_streams_when_post_copy_is_not_allowed():
    chosen = _methods.choose("auto", "criu", THIS, THIS)
    assert chosen["method"] == "stream" and chosen["reason"] == "best possible"
    assert "allow_post_copy" in chosen["rejected"]["post_copy"]
    assert "soft-dirty" in chosen["rejected"]["pre_copy"]


def test_auto_takes_post_copy_when_allowed_and_the_target_has_userfaultfd():
    assert _methods.choose("auto", "criu", NO_UFFD, THIS, allow_post_copy=True)["method"] == "post_copy"


def test_auto_skips_post_copy_for_a_target_without_userfaultfd():
    chosen = _methods.choose("auto", "criu", THIS, NO_UFFD, allow_post_copy=True)
    assert chosen["method"] == "stream"
    assert "userfaultfd" in chosen["rejected"]["post_copy"]


def test_auto_takes_pre_copy_where_the_source_tracks_dirty_memory_unless_the_policy_forbids_it():
    chosen = _methods.choose("auto", "criu", SOFT_DIRTY, THIS)
    assert chosen["method"] == "pre_copy" and chosen["transport"] is None
    assert "allow_post_copy" in chosen["rejected"]["post_copy"]
    forbidden = _methods.choose("auto", "criu", SOFT_DIRTY, THIS, allow_pre_copy=False)
    assert forbidden["method"] == "stream" and "allow_pre_copy" in forbidden["rejected"]["pre_copy"]
    # Post-copy, when allowed, still comes first: its downtime does not grow with the memory.
    assert _methods.choose("auto", "criu", SOFT_DIRTY, THIS, allow_post_copy=True)["method"] == "post_copy"


def test_pre_copy_needs_the_sources_soft_dirty_and_the_direct_route():
    assert "soft-dirty" in _methods.choose("auto", "criu", THIS, SOFT_DIRTY)["rejected"]["pre_copy"]
    with pytest.raises(_methods.MethodError, match="pre_copy is not possible: the source's kernel does not track dirty memory"):
        _methods.choose("pre_copy", "criu", THIS, SOFT_DIRTY)
    with pytest.raises(_methods.MethodError, match="route controller"):
        _methods.choose("pre_copy", "criu", SOFT_DIRTY, SOFT_DIRTY, route="controller")
    with pytest.raises(_methods.MethodError, match="engine docker"):
        _methods.choose("pre_copy", "docker", SOFT_DIRTY, SOFT_DIRTY)
    assert _methods.choose("auto", "podman", SOFT_DIRTY, SOFT_DIRTY)["method"] == "pre_copy"  # podman pre-checkpoints
    assert _methods.choose("pre_copy", "criu", SOFT_DIRTY, THIS)["reason"] == "asked for"


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_image_engines_stop_and_copy(engine):
    chosen = _methods.choose("auto", engine, THIS, THIS, allow_post_copy=True)
    assert chosen["method"] == "stop_and_copy"
    assert engine in chosen["rejected"]["post_copy"] and engine in chosen["rejected"]["stream"]


def test_a_controller_route_cannot_carry_a_page_link():
    chosen = _methods.choose("auto", "criu", THIS, THIS, allow_post_copy=True, route="controller")
    assert chosen["method"] == "stop_and_copy" and "route controller" in chosen["rejected"]["stream"]


def test_a_method_asked_for_by_name_is_consent_but_must_be_possible():
    assert _methods.choose("post_copy", "criu", THIS, THIS)["method"] == "post_copy"
    assert _methods.choose("post_copy", "criu", THIS, THIS)["reason"] == "asked for"
    with pytest.raises(_methods.MethodError, match="target cannot serve lazy pages"):
        _methods.choose("post_copy", "criu", THIS, NO_UFFD)
    with pytest.raises(_methods.MethodError, match="engine podman"):
        _methods.choose("stream", "podman", THIS, THIS)


def test_the_filter_names_itself_and_the_bad_value():
    with pytest.raises(AnsibleFilterError, match="ferry.migrate.migration_method: method must be one of .*'fast'"):
        migration_method("fast", "criu", THIS, THIS)
    assert migration_method("auto", "criu", THIS, THIS, allow_post_copy=True)["method"] == "post_copy"


TLS = dict(THIS, features=dict(THIS["features"], page_server_tls=True))


def test_a_stream_goes_over_criu_tls_when_both_have_it_and_the_policy_lets_it():
    assert _methods.choose("auto", "criu", TLS, TLS)["transport"] == "tls"
    assert _methods.choose("stream", "criu", TLS, TLS, stream_transport="ssh")["transport"] == "ssh"
    assert _methods.choose("auto", "criu", TLS, THIS)["transport"] == "ssh"  # the target lacks it: the SSH link
    with pytest.raises(_methods.MethodError, match="stream_transport tls is not possible: the target's CRIU was built without TLS"):
        _methods.choose("stream", "criu", TLS, THIS, stream_transport="tls")
    with pytest.raises(_methods.MethodError, match="source and the target's CRIU"):
        _methods.choose("stream", "criu", THIS, THIS, stream_transport="tls")


def test_post_copy_keeps_the_ssh_link_and_stop_and_copy_has_none():
    assert _methods.choose("post_copy", "criu", TLS, TLS, stream_transport="tls")["transport"] == "ssh"
    assert _methods.choose("auto", "podman", TLS, TLS)["transport"] is None


def test_a_bad_stream_transport_is_named():
    with pytest.raises(AnsibleFilterError, match="stream_transport must be one of auto, tls, ssh, not 'quic'"):
        migration_method("auto", "criu", TLS, TLS, stream_transport="quic")
