"""A restore's steps with a fake engine: the bundle waited for, verified, restored once; rollback."""
import os
import shutil
import threading
import time

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _checkpoint, _restore, _wire
from fake_engine import FakeCriu, FakeEngine
from test_address import Nft
from test_checkpoint import params as checkpoint_params


def delivered(tmp_path, name="web"):
    """A bundle of ``name`` checkpointed on a source and delivered to this host's images directory."""
    source = tmp_path / "source"
    result = _checkpoint.Checkpoint(FakeEngine(), checkpoint_params(source, container=name), name).take()
    target = tmp_path / "target"
    target.mkdir(exist_ok=True)
    shutil.copytree(result["path"], _bundle.final_path(str(target), name))
    return str(target)


def restore(images_dir, fake, **more):
    params = dict(dict(checkpoint_id="web", images_dir=images_dir, engine=None, resume=False, cpu_check=True, wait=0), **more)
    return _restore.Restore(params, lambda name: fake if name == fake.name else pytest.fail("engine %s made" % name))


def test_a_delivered_bundle_restores_once(tmp_path):
    engine, images_dir = FakeEngine(state=None), delivered(tmp_path)
    result = restore(images_dir, engine).run(check_mode=False)
    assert result["changed"] and result["running_at"] and engine.restored == [b"memory of web"]
    assert restore(images_dir, engine).run(check_mode=False)["changed"] is False  # it runs already
    assert engine.restored == [b"memory of web"]


def test_check_mode_verifies_and_restores_nothing(tmp_path):
    engine = FakeEngine(state=None)
    assert restore(delivered(tmp_path), engine).run(check_mode=True) == {"changed": True}
    assert engine.restored == []


def test_a_bundle_that_does_not_verify_is_refused_naming_the_file(tmp_path):
    images_dir = delivered(tmp_path)
    with open(os.path.join(_bundle.final_path(images_dir, "web"), "pages-1.img"), "ab") as handle:
        handle.write(b"!")
    engine = FakeEngine(state=None)
    with pytest.raises(_restore.Failed) as failed:
        restore(images_dir, engine).run(check_mode=False)
    assert failed.value.phase == "verify" and failed.value.extra["problems"] == ["pages-1.img has 14 bytes, manifest says 13"]
    assert str(failed.value) == "checkpoint web does not verify: pages-1.img has 14 bytes, manifest says 13"
    assert engine.restored == []


@pytest.mark.parametrize("engine, more, message", [
    (FakeEngine(state=None, criu=FakeCriu(version=(4, 1, 0))), {}, "CRIU 4.1.0 here is older than CRIU 4.2.0 that took the checkpoint"),
    (FakeEngine(state=None, criu=FakeCriu(cpu_ok=False)), {}, "this host's CPU cannot run processes checkpointed on "),
    (FakeEngine(state=None), {"engine": "podman"}, "engine: the checkpoint was taken with engine fake, not podman"),
])
def test_a_host_that_cannot_run_the_checkpoint_is_refused_before_the_restore(tmp_path, engine, more, message):
    with pytest.raises(_restore.Failed, match="^" + message) as failed:
        restore(delivered(tmp_path), engine, **more).run(check_mode=False)
    assert failed.value.phase == "verify" and engine.restored == []


def test_a_resume_at_home_skips_the_cpu_check(tmp_path):
    engine = FakeEngine(state="exited", criu=FakeCriu(cpu_ok=False))
    assert restore(delivered(tmp_path), engine, resume=True).run(check_mode=False)["changed"]
    assert engine.resumed == ["web"]


def test_a_restore_that_fails_says_so_with_the_tools_words(tmp_path):
    with pytest.raises(_restore.Failed) as failed:
        restore(delivered(tmp_path), FakeEngine(state=None, fail="CRIU restore failed")).run(check_mode=False)
    assert (str(failed.value), failed.value.phase, failed.value.extra) == (
        "restore failed: CRIU restore failed", "restore", {"detail": "the tool's own words"})


def test_the_restore_waits_for_a_bundle_the_source_delivers(tmp_path):
    images_dir = delivered(tmp_path)
    arriving = os.path.join(images_dir, ".arriving")
    os.rename(_bundle.final_path(images_dir, "web"), arriving)
    threading.Timer(0.3, os.rename, (arriving, _bundle.final_path(images_dir, "web"))).start()
    engine = FakeEngine(state=None)
    assert restore(images_dir, engine, wait=10).run(check_mode=False)["changed"]
    assert not os.path.exists(_wire.wait_marker(images_dir, "web"))


def test_a_waiting_restore_holds_its_marker_until_it_is_over(tmp_path):
    """The source's receiver stays while the marker is there, so it must outlast the restore itself."""
    images_dir, seen = delivered(tmp_path), []
    engine = FakeEngine(state=None)
    engine_restore = engine.restore
    engine.restore = lambda *args: seen.append(os.path.exists(_wire.wait_marker(images_dir, "web"))) or engine_restore(*args)
    assert restore(images_dir, engine, wait=10).run(check_mode=False)["changed"]
    assert seen == [True] and not os.path.exists(_wire.wait_marker(images_dir, "web"))


def test_a_wait_ends_when_the_rollback_removes_the_checkpoint_or_time_runs_out(tmp_path):
    images_dir = str(tmp_path)
    engine = FakeEngine(state=None)
    threading.Timer(0.3, lambda: restore(images_dir, engine).remove(check_mode=False)).start()
    started = time.monotonic()
    with pytest.raises(_restore.Failed, match="^checkpoint web: the wait for it was cancelled$"):
        restore(images_dir, engine, wait=10).run(check_mode=False)
    assert time.monotonic() - started < 5
    with pytest.raises(_restore.Failed, match="^checkpoint web did not arrive within 1 s$"):
        restore(images_dir, engine, wait=1).run(check_mode=False)


def test_the_rollback_removes_the_restored_container(tmp_path):
    images_dir = delivered(tmp_path)
    engine = FakeEngine(state=None)
    restore(images_dir, engine).run(check_mode=False)
    assert restore(images_dir, engine).remove(check_mode=True) == {"changed": True} and engine.removed == []
    assert restore(images_dir, engine).remove(check_mode=False) == {"changed": True} and engine.removed == ["web"]
    assert restore(images_dir, engine).remove(check_mode=False) == {"changed": False}


class HostModule:
    """What the restore asks of AnsibleModule on a host: nft's path, commands (a recorded nft), warnings."""

    def __init__(self, engine, nft="/usr/sbin/nft"):
        self.engine, self.nft, self.calls, self.warnings, self.firewall = engine, nft, [], [], Nft()
        self.tables = self.firewall.tables

    def get_bin_path(self, name):
        return self.nft if name == "nft" else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append((argv[1:3], self.engine.state))  # what nft did, and whether the container ran then
        return self.firewall(argv, data)

    def warn(self, message):
        self.warnings.append(message)


class FabricEngine(FakeEngine):
    """A container with an address of its own on a macvlan network whose parent is eth0."""

    def describe(self, container):
        found = super().describe(container)
        return dict(found, addresses=["10.199.0.150"], networks=["fabric"]) if found else None

    def parent_devices(self, networks):
        return ["eth0"] if networks == ["fabric"] else []


def fabric_bundle(tmp_path):
    source = tmp_path / "source"
    result = _checkpoint.Checkpoint(FabricEngine(), checkpoint_params(source, container="web"), "web").take()
    target = tmp_path / "target"
    target.mkdir()
    shutil.copytree(result["path"], _bundle.final_path(str(target), "web"))
    return str(target)


@pytest.mark.parametrize("fail", [None, "runc restore failed"])
def test_a_container_on_a_macvlan_network_is_restored_behind_a_hold_removed_when_the_engine_returns(tmp_path, fail):
    images_dir, engine = fabric_bundle(tmp_path), FabricEngine(state=None, fail=fail)
    engine.module = HostModule(engine)
    if fail:
        with pytest.raises(_restore.Failed, match="^restore failed: runc restore failed$"):
            restore(images_dir, engine).run(check_mode=False)
    else:
        assert restore(images_dir, engine).run(check_mode=False)["held"] == ["eth0"]
    # held while nothing ran, released whatever the engine did
    assert engine.module.calls == [(["-f", "-"], None), (["delete", "table"], "running" if not fail else None)]
    assert engine.module.tables == set()


def test_without_nft_the_restore_goes_on_and_warns(tmp_path):
    images_dir, engine = fabric_bundle(tmp_path), FabricEngine(state=None)
    engine.module = HostModule(engine, nft=None)
    result = restore(images_dir, engine).run(check_mode=False)
    assert result["held"] == [] and engine.restored and engine.module.calls == []
    assert engine.module.warnings == ["nft is not on this host (package nftables; role ferry.migrate.criu_host installs it): "
                                      "a client's connection to 10.199.0.150 may be reset while it is restored"]


def test_the_rollback_removes_a_hold_a_killed_restore_left(tmp_path):
    images_dir, engine = fabric_bundle(tmp_path), FabricEngine(state=None)
    engine.module = HostModule(engine)
    engine.module.tables.add("ferry_hold_web")
    assert restore(images_dir, engine).remove(check_mode=False) == {"changed": True}
    assert engine.module.tables == set()


def test_a_failed_restore_reports_the_engines_failure_even_when_the_hold_cannot_be_released(tmp_path):
    images_dir, engine = fabric_bundle(tmp_path), FabricEngine(state=None, fail="runc restore failed")
    engine.module = HostModule(engine)
    engine.module.run_command = lambda argv, data=None, binary_data=False: (0, "", "") if argv[1:] == ["-f", "-"] else (1, "", "nft: busy")
    with pytest.raises(_restore.Failed, match="^restore failed: runc restore failed$"):
        restore(images_dir, engine).run(check_mode=False)


def test_a_waiting_restore_given_its_engine_asks_the_host_ahead_of_the_bundle(tmp_path):
    """What the bundle does not decide is asked while it is on its way; one that arrived during the wait
    cannot have been restored yet, so whether it runs is not asked either."""
    images_dir = delivered(tmp_path)
    final, arriving = _bundle.final_path(images_dir, "web"), os.path.join(images_dir, ".arriving")
    os.rename(final, arriving)
    threading.Timer(0.3, os.rename, (arriving, final)).start()
    engine, prepared = FakeEngine(state=None), []
    engine.prepare = lambda: prepared.append(os.path.exists(final))
    engine.running = lambda manifest: pytest.fail("asked whether a bundle that just arrived runs")
    assert restore(images_dir, engine, wait=10, engine="fake").run(check_mode=False)["changed"]
    assert prepared == [False] and engine.restored == [b"memory of web"]
    # Here before the wait began (a job run again): whether it runs already is asked, and it does.
    del engine.running
    assert restore(images_dir, engine, wait=10, engine="fake").run(check_mode=False)["changed"] is False
    assert restore(images_dir, engine, wait=10).run(check_mode=False)["changed"] is False and prepared == [False, True]
