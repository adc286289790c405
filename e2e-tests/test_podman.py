"""podman (with conmon) running containers through the runtime.

conmon calls ``--log-format=json --log F create --bundle B --pid-file P
[--console-socket S] ID`` and ``exec --pid-file P --process F --detach
[--tty --console-socket S] ID``; podman itself calls ``start``, ``kill``,
``pause``, ``resume``, ``update --resources=FILE`` and ``delete --force`` with
no global flags, so the runtime's default ``--root`` is used.
"""
from __future__ import annotations

MiB = 1 << 20


def test_run_rm_prints_output(podman, util):
    proc = podman.run("--rm", util.IMAGE, "echo", "hi")
    assert proc.returncode == 0, util.describe(proc)
    assert proc.stdout == "hi\n", util.describe(proc)


def test_podman_calls_the_runtime_under_test(podman, e2e, util):
    mark = e2e.calls_offset()
    cid = podman.start_detached(util.SLEEPER_SCRIPT)
    util.check(podman("rm", "--force", "--time", "0", cid))
    calls = [c for c in e2e.calls(mark) if cid in c.args]
    commands = [c.command for c in calls]
    assert {"create", "start", "kill", "delete"} <= set(commands), \
        f"runtime calls for {cid}: {[str(c) for c in calls]}"
    create = calls[commands.index("create")]
    assert "--log-format=json" in create.argv, str(create)


def test_exit_code_passes_through(podman, util):
    proc = podman.run("--rm", util.IMAGE, "sh", "-c", "exit 7")
    assert proc.returncode == 7, util.describe(proc)


def test_missing_command_exits_127(podman, util):
    proc = podman.run("--rm", util.IMAGE, "no-such-command")
    assert proc.returncode == 127, util.describe(proc)
    assert "executable file not found" in proc.stderr, util.describe(proc)
    # podman then removes the half-made container with `delete --force ID`,
    # which must succeed although the runtime has nothing left of it (runc
    # exits 0); a failure there is logged as this error.
    assert "after creation failed" not in proc.stderr, util.describe(proc)


def test_exec_runs_in_the_container_and_returns_its_status(podman, util):
    cid = podman.start_detached(util.SLEEPER_SCRIPT)
    proc = podman("exec", cid, "sh", "-c", "echo exec-out; cat /proc/1/cmdline; exit 5")
    assert proc.returncode == 5, util.describe(proc)
    out, init = proc.stdout.split("\n", 1)
    assert out == "exec-out", util.describe(proc)
    assert init.split("\0")[:2] == ["sh", "-c"], util.describe(proc)


def test_exec_with_a_tty(podman, util):
    cid = podman.start_detached(util.SLEEPER_SCRIPT)
    proc = podman("exec", "--tty", cid, "sh", "-c", "tty; stty size; exit 6", tty=True)
    assert proc.returncode == 6, util.describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("/dev/pts/"), util.describe(proc)
    assert lines[1] == "31 97", util.describe(proc)


def test_stop_sends_term(podman, util):
    cid = podman.start_detached(util.SLEEPER_SCRIPT)
    pid = podman.pid(cid)
    util.check(podman("stop", "--time", "10", cid))
    assert not util.pid_alive(pid)
    assert podman.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"


def test_stop_kills_a_process_that_ignores_term(podman, util):
    # As pid 1 with no handler, sleep never sees SIGTERM: stop must SIGKILL.
    cid = podman.start_detached("exec sleep 1000")
    util.check(podman("stop", "--time", "1", cid))
    assert podman.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"


def test_pause_freezes_and_unpause_thaws(podman, util):
    cid = podman.start_detached(util.COUNTER_SCRIPT)
    pid = podman.pid(cid)

    def pause() -> None:
        util.check(podman("pause", cid))
        assert podman.inspect(cid, "{{.State.Status}}") == "paused"

    def unpause() -> None:
        util.check(podman("unpause", cid))
        assert podman.inspect(cid, "{{.State.Status}}") == "running"
    util.assert_counter_stops_and_resumes(pid, pause, unpause)


def test_container_runs_in_the_cgroup_podman_asked_for(podman, util):
    cid = podman.start_detached(util.SLEEPER_SCRIPT)
    paths = util.proc_cgroups(podman.pid(cid))
    for controller in ("memory", "pids", "freezer", "devices"):
        assert paths.get(controller) == f"{podman.cgroup_parent}/libpod-{cid}", (controller, paths)


def test_run_memory_limit(podman, util):
    cid = podman.start_detached(util.SLEEPER_SCRIPT, "--memory", "64m")
    assert util.memory_limit(podman.pid(cid)) == 64 * MiB


def test_update_memory(podman, util):
    cid = podman.start_detached(util.SLEEPER_SCRIPT, "--memory", "64m")
    util.check(podman("update", "--memory", "96m", cid))
    assert util.memory_limit(podman.pid(cid)) == 96 * MiB


def test_rm_force_removes_a_running_container(podman, util):
    cid = podman.start_detached(util.SLEEPER_SCRIPT)
    pid = podman.pid(cid)
    util.check(podman("rm", "--force", "--time", "2", cid))
    util.wait_for(lambda: not util.pid_alive(pid), 10, "the container's process to die")
    assert cid not in podman("ps", "--all", "--quiet", "--no-trunc").stdout.split()
