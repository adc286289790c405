"""Start the kernel's slow path for cgroup migrations early, in a thread.

Moving a process into a cgroup (a write to cgroup.procs) takes the global
cgroup_threadgroup_rwsem for writing.  When no migration happened in the
last few milliseconds, that first waits for an RCU grace period (the
percpu rwsem leaves its fast reader mode): measured here, the first write
took 11 ms and every later one 0.02 ms.  For `create`, `run` and `exec` that
wait sat right in the critical path, between the clone and the child's
go-ahead.  Moving a thread of our own into a cgroup of the container a little
earlier, in the background, pays the grace period while the main thread
works; the real migration then finds the lock's slow path ready.

Only cgroups ocipy creates are written (the container's own, or the
default parent /ocipy its cgroup goes under); the thread exits right after,
which takes it out of the cgroup again.  Best effort: any failure just
means no head start.
"""
from __future__ import annotations

from ocipy import _os as os  # os without importing os (see _os.py)


# the default parent in a v1 hierarchy whose cgroup constrains a thread in
# nothing (cgroups/paths.py DEFAULT_PARENT under the v1 pids mount)
_DEFAULT_PARENT_PIDS = "/sys/fs/cgroup/pids/ocipy"


class Warmup:
    """One background thread that moves itself into a cgroup every 2 ms
    until ``stop`` (or half a second): the first move pays the grace period,
    the later ones keep the lock's slow path ready (it returns to the fast
    mode one grace period after the last writer), however long the main
    thread takes to get to its own migration.  ``finish`` also waits for the
    thread and removes a directory it made."""

    INTERVAL = 0.002
    LIMIT = 0.5

    def __init__(self, directory: str | None, *, make: bool = False) -> None:
        import _thread

        self.directory = directory
        self.made = False
        self._stopped = False
        self._done = _thread.allocate_lock()
        if not directory:
            return
        if make:
            try:
                os.mkdir(directory, 0o755)
                self.made = True
            except FileExistsError:
                pass
            except OSError:
                self.directory = None
                return
        self._done.acquire()
        _thread.start_new_thread(self._move_self, ())

    def _move_self(self) -> None:
        import _thread
        import time

        try:
            fd = os.open(os.path.join(self.directory, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                # the thread's own id, not "0": writing 0 skips the global lock
                tid = str(_thread.get_native_id()).encode()
                end = time.monotonic() + self.LIMIT
                while not self._stopped and time.monotonic() < end:
                    os.write(fd, tid)
                    time.sleep(self.INTERVAL)
            finally:
                os.close(fd)
        except OSError:
            pass
        finally:
            self._done.release()

    def stop(self) -> None:
        """The migration that mattered is done: let the thread go."""
        self._stopped = True

    def finish(self) -> None:
        """After a failed create: the directory this made goes again (once the
        thread has left it; someone else's container in it keeps it)."""
        self._stopped = True
        if not self.made:
            return
        self._done.acquire(timeout=1.0)
        for _ in range(20):  # the exiting thread may hold it for a moment
            try:
                os.rmdir(self.directory)
                return
            except OSError as exc:
                import errno

                if exc.errno != errno.EBUSY:
                    return
            import time

            time.sleep(0.005)


class FrontendWarmup:
    """The warm-up the front-end started before the interpreter (frontend.c,
    warm_up_cgroups): a child process of ours, by the pid it left in
    OCIPY_WARMUP.  ``stop`` ends and reaps it; ``finish`` also removes the
    default parent when nothing lives there any more."""

    def __init__(self, pid: int, made: bool) -> None:
        self.directory = _DEFAULT_PARENT_PIDS
        self.made = made
        self.pid = pid

    def stop(self) -> None:
        if not self.pid:
            return
        pid, self.pid = self.pid, 0
        try:
            os.kill(pid, 9)  # SIGKILL, by the pid of the child we started
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def finish(self) -> None:
        self.stop()
        # whoever made it: the default parent goes once nothing lives there
        # (container._remove_default_parent's rule).  Otherwise a create that
        # failed while another one's helper sat in it, or whose delete ran
        # then, would leave it behind.  A create racing us re-makes it
        # (files.make_dirs retries on ENOENT).
        try:
            os.rmdir(self.directory)
        except OSError:
            pass  # a container's cgroup, or a helper, is there


def discard_frontend() -> None:
    """For a command that places no container (create --explain): end the
    front-end's helper, if any, and undo what it made."""
    frontend = from_frontend()
    if frontend is not None:
        frontend.finish()


def from_frontend() -> FrontendWarmup | None:
    """The helper the front-end started for this command, if any (create,
    run, and exec when the default parent exists)."""
    value = os.environ.pop("OCIPY_WARMUP", None)
    if not value:
        return None
    try:
        pid, made = (int(v) for v in value.split())
    except ValueError:
        return None
    # only a child of ours: the variable may have been inherited from afar
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return FrontendWarmup(pid, bool(made)) if ppid == os.getpid() else None


_PEEK_LIMIT = 1 << 20


def _peek(path: str) -> bytes | None:
    """A regular file's bytes, if small: never block on a fifo or read a
    device (config.py refuses both with a proper error later)."""
    import _stat as stat  # the C module stat.py re-exports

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size >= _PEEK_LIMIT:
            return None
        return os.read(fd, _PEEK_LIMIT)
    except OSError:
        return None
    finally:
        os.close(fd)


def start(directory: str | None) -> Warmup:
    """Move a short-lived thread into ``directory`` (a v1 cgroup of the
    container: its tasks file takes a single thread) in the background."""
    return Warmup(directory)


def start_default_parent(bundle: str, systemd: bool) -> Warmup | FrontendWarmup:
    """The front-end's helper when it started one (every create and run but
    --systemd-cgroup ones).  Without the front-end (``python -m ocipy``, the
    API), a thread, for a config that names no cgroupsPath (its cgroup goes
    under the default parent, which it makes anyway), started before the
    config is even parsed: the raw peek is enough, a config that mentions
    cgroupsPath anywhere just gets no head start."""
    frontend = from_frontend()
    if frontend is not None:
        return frontend
    if systemd:
        return Warmup(None)
    raw = _peek(os.path.join(bundle, "config.json"))
    if raw is None:
        return Warmup(None)
    if b'"cgroupsPath"' in raw or not os.path.isdir("/sys/fs/cgroup/pids"):
        return Warmup(None)
    return Warmup(_DEFAULT_PARENT_PIDS, make=True)


def v1_directory(cgroup_doc: dict | None) -> str | None:
    """The container's directory in one v1 hierarchy that is safe to visit
    (not the freezer: a paused container would freeze the thread; not
    devices or cpuset: they would constrain it), from its state record."""
    if not cgroup_doc or cgroup_doc.get("version") != "v1":
        return None
    dirs = cgroup_doc.get("dirs") or {}
    # the default parent rather than the container's own cgroup, when it is
    # there: a thread of ours in the container's cgroup would show in its
    # cgroup.procs (ps, kill --all) for a moment
    if os.path.dirname(dirs.get("pids", "")) == _DEFAULT_PARENT_PIDS:
        return _DEFAULT_PARENT_PIDS
    for controller in ("pids", "cpu", "cpuacct", "memory", "blkio"):
        if controller in dirs:
            return dirs[controller]
    return None
