"""Docker (dockerd, its containerd and containerd-shim-runc-v2) running
containers through the runtime, registered with ``--add-runtime ocipy=<runtime>``.

dockerd's shim calls the runtime as containerd's does, with
``--root <exec-root>/runtime-ocipy/moby``.  The docker CLI exits 127 only when
the runtime's error contains "executable file not found" or "no such file or
directory" (case-sensitive).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

MiB = 1 << 20
HELLO_DOCKER = "Hello Docker!"


def test_run_rm_prints_output(docker, util):
    proc = docker.run("--rm", util.IMAGE, "echo", "hi")
    assert proc.returncode == 0, util.describe(proc)
    assert proc.stdout == "hi\n", util.describe(proc)


def test_dockerd_calls_the_runtime_under_test(docker, e2e, util):
    mark = e2e.calls_offset()
    cid = docker.start_detached(util.SLEEPER_SCRIPT)
    util.check(docker("rm", "--force", cid))
    calls = [c for c in e2e.calls(mark) if cid in c.args]
    commands = [c.command for c in calls]
    assert {"create", "start", "kill", "delete"} <= set(commands), \
        f"runtime calls for {cid}: {[str(c) for c in calls]}"
    create = calls[commands.index("create")]
    assert create.root and create.root.startswith(str(docker.home / "exec")), str(create)


def test_exit_code_passes_through(docker, util):
    proc = docker.run("--rm", util.IMAGE, "sh", "-c", "exit 7")
    assert proc.returncode == 7, util.describe(proc)


def test_missing_command_exits_127(docker, util):
    proc = docker.run("--rm", util.IMAGE, "no-such-command")
    assert proc.returncode == 127, util.describe(proc)
    assert "executable file not found" in proc.stderr, util.describe(proc)


def test_exec_runs_in_the_container_and_returns_its_status(docker, util):
    cid = docker.start_detached(util.SLEEPER_SCRIPT)
    proc = docker("exec", cid, "sh", "-c", "echo exec-out; cat /proc/1/cmdline; exit 5")
    assert proc.returncode == 5, util.describe(proc)
    out, init = proc.stdout.split("\n", 1)
    assert out == "exec-out", util.describe(proc)
    assert init.split("\0")[:2] == ["sh", "-c"], util.describe(proc)


def test_exec_of_a_missing_command_fails_with_the_runtimes_message(docker, util):
    """Docker 20.10 exits 126 for any exec that fails to start (with runc too)
    and prints the runtime's error on stdout."""
    cid = docker.start_detached(util.SLEEPER_SCRIPT)
    proc = docker("exec", cid, "no-such-command")
    assert proc.returncode == 126, util.describe(proc)
    assert "executable file not found" in proc.stdout + proc.stderr, util.describe(proc)


def test_top_lists_the_containers_processes(docker, util):
    cid = docker.start_detached("exec sleep 1000")
    pid = docker.pid(cid)
    proc = docker("top", cid)
    assert proc.returncode == 0, util.describe(proc)
    header, *rows = proc.stdout.splitlines()
    pid_col = header.split().index("PID")
    assert [int(r.split()[pid_col]) for r in rows] == [pid], util.describe(proc)
    assert "sleep 1000" in proc.stdout, util.describe(proc)


def test_stop_then_start_again(docker, util):
    cid = docker.start_detached('echo started; ' + util.SLEEPER_SCRIPT)
    pid = docker.pid(cid)
    util.check(docker("stop", "--time", "10", cid))
    assert not util.pid_alive(pid)
    assert docker.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"
    util.check(docker("start", cid))
    assert docker.inspect(cid, "{{.State.Status}}") == "running"
    assert docker.pid(cid) != pid
    util.wait_for(lambda: docker("logs", cid).stdout == "started\nstarted\n", 10,
                  "the second start's output in docker logs")


def test_stop_kills_a_process_that_ignores_term(docker, util):
    cid = docker.start_detached("exec sleep 1000")
    util.check(docker("stop", "--time", "1", cid))
    assert docker.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"


def test_pause_freezes_and_unpause_thaws(docker, util):
    cid = docker.start_detached(util.COUNTER_SCRIPT)
    pid = docker.pid(cid)

    def pause() -> None:
        util.check(docker("pause", cid))
        assert docker.inspect(cid, "{{.State.Status}}") == "paused"

    def unpause() -> None:
        util.check(docker("unpause", cid))
        assert docker.inspect(cid, "{{.State.Status}}") == "running"
    util.assert_counter_stops_and_resumes(pid, pause, unpause)


def test_container_runs_in_the_cgroup_docker_asked_for(docker, util):
    cid = docker.start_detached(util.SLEEPER_SCRIPT)
    paths = util.proc_cgroups(docker.pid(cid))
    for controller in ("memory", "pids", "freezer", "devices"):
        assert paths.get(controller) == f"{docker.cgroup_parent}/{cid}", (controller, paths)


def test_run_memory_limit(docker, util):
    cid = docker.start_detached(util.SLEEPER_SCRIPT, "--memory", "64m")
    assert util.memory_limit(docker.pid(cid)) == 64 * MiB


def test_update_memory_limit(docker, util):
    cid = docker.start_detached(util.SLEEPER_SCRIPT, "--memory", "64m", "--memory-swap", "-1")
    util.check(docker("update", "--memory", "96m", "--memory-swap", "-1", cid))
    assert util.memory_limit(docker.pid(cid)) == 96 * MiB


def test_read_only_root(docker, util):
    proc = docker.run("--rm", "--read-only", util.IMAGE, "sh", "-c",
                      "touch /written; echo status=$?; grep ' / ' /proc/self/mounts")
    assert proc.returncode == 0, util.describe(proc)
    assert "status=1" in proc.stdout, util.describe(proc)
    assert "Read-only file system" in proc.stderr, util.describe(proc)
    root_options = proc.stdout.splitlines()[-1].split()[3].split(",")
    assert "ro" in root_options, util.describe(proc)


def test_bind_mount(docker, e2e, util, tmp_path):
    shared = Path(e2e.tmp) / f"bind-{tmp_path.name}"
    shared.mkdir()
    (shared / "from-host").write_text("host data\n")
    try:
        proc = docker.run("--rm", "--volume", f"{shared}:/data", util.IMAGE, "sh", "-c",
                          "cat /data/from-host; echo container data > /data/from-container")
        assert proc.returncode == 0, util.describe(proc)
        assert proc.stdout == "host data\n", util.describe(proc)
        assert (shared / "from-container").read_text() == "container data\n"
        proc = docker.run("--rm", "--volume", f"{shared}:/data:ro", util.IMAGE, "sh", "-c",
                          "echo x > /data/denied; echo status=$?")
        assert "status=1" in proc.stdout and "Read-only file system" in proc.stderr, \
            util.describe(proc)
        assert not (shared / "denied").exists()
    finally:
        for f in shared.iterdir():
            f.unlink()
        shared.rmdir()


def test_four_containers_in_parallel(docker, util):
    results: dict[int, subprocess.CompletedProcess | BaseException] = {}

    def one(n: int) -> None:
        try:
            results[n] = docker.run("--rm", "--hostname", f"par-{n}", util.IMAGE,
                                    "sh", "-c", f"sleep 0.5; echo $(hostname) {n}; exit {n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[n] = exc
    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(util.TIMEOUT + 10)
    for n in range(4):
        proc = results.get(n)
        assert isinstance(proc, subprocess.CompletedProcess), f"container {n}: {proc!r}"
        assert proc.returncode == n, util.describe(proc)
        assert proc.stdout == f"par-{n} {n}\n", util.describe(proc)


def test_hello_docker_over_http(docker, util):
    """busybox httpd in an ocipy container serves "Hello Docker!"; a real HTTP
    client on the host fetches it through the container's network namespace
    (its loopback: the container has --network none)."""
    cid = docker.start_detached(f'mkdir -p /www && echo "{HELLO_DOCKER}" > /www/index.html '
                                '&& exec httpd -f -p 8080 -h /www')
    pid = docker.pid(cid)
    fetch = ("import sys, time, urllib.request\n"
             "for _ in range(100):\n"
             "    try:\n"
             "        print(urllib.request.urlopen('http://127.0.0.1:8080/', timeout=5)"
             ".read().decode(), end='')\n"
             "        sys.exit(0)\n"
             "    except OSError:\n"
             "        time.sleep(0.1)\n"
             "sys.exit('no answer from httpd')\n")
    proc = util.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", fetch],
                    timeout=30, env={**os.environ, "no_proxy": "*"})
    assert proc.returncode == 0, util.describe(proc)
    assert proc.stdout == HELLO_DOCKER + "\n", util.describe(proc)
