"""An engine for unit tests of what drives engines: a container whose checkpoint is one file of memory."""
import os

from ansible_collections.ferry.migrate.plugins.module_utils import _engine


class FakeCriu:
    def __init__(self, version=(4, 2, 0), cpu_ok=True):
        self._version, self.cpu_ok = version, cpu_ok

    def version(self):
        return self._version

    def cpuinfo_check(self, directory):
        return self.cpu_ok and os.path.exists(os.path.join(directory, "cpuinfo.img"))

    def cpuinfo_dump(self, directory):
        with open(os.path.join(directory, "cpuinfo.img"), "wb") as handle:
            handle.write(b"cpu")


class FakeEngine(_engine.Engine):
    """A container whose checkpoint is one file of memory; ``fail`` makes its dump fail."""
    name = "fake"
    capabilities = dict(_engine.Engine.capabilities, methods=["stop_and_copy", "post_copy", "pre_copy"])
    PAGE = 4096

    def __init__(self, state="running", fail=None, criu=None):
        super().__init__(None, criu or FakeCriu())
        self.state, self.fail, self.resumed, self.restored, self.removed, self.handed = state, fail, [], [], [], None
        self.dirty = []  # pre-copy: pages each pre-dump finds dirty, in turn
        self.parents = []  # the parent each pre-dump, then the final dump, stood on

    def pre_dump(self, container, bundle_dir, parent):
        pages = self.dirty.pop(0)
        self.parents.append(parent)
        with open(os.path.join(bundle_dir, "pages-1.img"), "wb") as handle:
            handle.write(b"p" * pages * self.PAGE)
        return {"container": self.describe(container), "stats": {"pages_written": pages, "frozen_time": 1500}}

    def describe(self, container):
        return {"name": container, "id": "f" * 64, "state": self.state} if self.state else None

    def checkpoint(self, container, bundle_dir, options, handover=None):
        if options.get("method") == "pre_copy":
            self.parents.append(options.get("parent"))
        with open(os.path.join(bundle_dir, "pages-1.img"), "wb") as handle:
            handle.write(b"memory of " + container.encode())
        fields = {"container": self.describe(container)}
        self.state = "exited"
        if handover:
            self.handed = handover(fields)
            if not self.handed:
                raise _engine.EngineError("the dump stopped: its handover failed")
        if self.fail:
            raise _engine.EngineError(self.fail, "the tool's own words")
        return dict(fields, page_link={"bytes_out": 1} if handover else None)

    def resume(self, bundle_dir, manifest, options):
        self.resumed.append(manifest["id"])
        self.state = "running"
        return {}

    def restore(self, bundle_dir, manifest, options):
        if self.fail:
            raise _engine.EngineError(self.fail, "the tool's own words")
        with open(os.path.join(bundle_dir, "pages-1.img"), "rb") as handle:
            self.restored.append(handle.read())
        self.state = "running"
        return {"container": self.describe(manifest["container"]["name"])}

    def running(self, manifest):
        return self.state == "running"

    def exists(self, manifest):
        return self.state is not None

    def remove(self, manifest):
        self.removed.append(manifest["id"])
        self.state = None
        return True


class Receiver:
    def __init__(self):
        self.killed = False

    def kill(self):
        self.killed = True
