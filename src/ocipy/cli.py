"""The command line: runc's, flag for flag, so containerd's shim, conmon and
dockerd can call ocipy where they call runc.  It only parses and calls
ocipy.container; every failure becomes one `ocipy: <what>: <why>` line on
stderr, exit status 1, and an error entry in the --log file.
"""
from __future__ import annotations

import argparse
import json
import sys

from ocipy.errors import OcipyError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's exit 2 -> runc's exit 1
        raise OcipyError(f"{self.prog}: {message}")


def _build_parser() -> argparse.ArgumentParser:
    from ocipy.state import DEFAULT_ROOT

    p = _Parser(prog="ocipy", description="Run containers from OCI bundles (a runc-compatible "
                "OCI runtime).")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default %(default)s)")
    p.add_argument("--log", default=None, help="log file (default: none)")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true", help="log debug messages")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="use systemd to manage cgroups (not supported yet)")
    p.add_argument("--rootless", default="auto", choices=("auto", "true", "false"))
    p.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    def create_flags(c: argparse.ArgumentParser) -> None:
        c.add_argument("-b", "--bundle", default=".", help="bundle directory (default: .)")
        c.add_argument("--pid-file", default=None, help="write the init's pid here")
        c.add_argument("--console-socket", default=None,
                       help="unix socket to send the pty master to")
        c.add_argument("--no-pivot", action="store_true", help="use MS_MOVE+chroot, not pivot_root")
        c.add_argument("--no-new-keyring", action="store_true",
                       help="keep the caller's session keyring")
        c.add_argument("--preserve-fds", type=int, default=0,
                       help="pass this many fds from 3 up to the container")
        c.add_argument("container_id", metavar="ID")

    create_flags(command("create", "create a container and leave it waiting for start"))
    c = command("start", "start the process of a created container")
    c.add_argument("container_id", metavar="ID")
    c = command("state", "print the state of a container as JSON")
    c.add_argument("container_id", metavar="ID")
    c = command("kill", "send a signal to a container's init (default TERM)")
    c.add_argument("-a", "--all", action="store_true", help="signal every process")
    c.add_argument("container_id", metavar="ID")
    c.add_argument("signal", nargs="?", default="TERM", metavar="SIGNAL")
    c = command("delete", "delete a stopped container")
    c.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
    c.add_argument("container_id", metavar="ID")
    c = command("run", "create and start a container")
    create_flags(c)
    c.add_argument("-d", "--detach", action="store_true", help="do not wait for it")
    c.add_argument("--keep", action="store_true", help="keep it after it exits")
    c = command("exec", "run a new process inside a container")
    c.add_argument("--process", "-p", default=None, help="a process.json to run instead of ARGS")
    c.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    c.add_argument("--console-socket", default=None, help="unix socket for the pty master")
    c.add_argument("-d", "--detach", action="store_true", help="do not wait for the process")
    c.add_argument("--pid-file", default=None, help="write the process's pid here")
    c.add_argument("--cwd", default=None, help="working directory inside the container")
    c.add_argument("-e", "--env", action="append", default=[], help="K=V to add to the env")
    c.add_argument("-u", "--user", default=None, help="UID[:GID]")
    c.add_argument("-g", "--additional-gids", action="append", type=int, default=[],
                   help="additional group id")
    c.add_argument("-c", "--cap", action="append", default=[], help="add a capability")
    c.add_argument("--no-new-privs", action="store_true", help="set no_new_privs")
    c.add_argument("--apparmor", default=None, help="AppArmor profile")
    c.add_argument("--process-label", default=None, help="SELinux label")
    c.add_argument("--preserve-fds", type=int, default=0,
                   help="pass this many fds from 3 up to the process")
    c.add_argument("container_id", metavar="ID")
    c.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    c = command("list", "list containers")
    c.add_argument("-f", "--format", default="table", choices=("table", "json"))
    c.add_argument("-q", "--quiet", action="store_true", help="print only ids")
    c = command("spec", "write a default config.json")
    c.add_argument("-b", "--bundle", default=".", help="bundle directory (default: .)")
    c.add_argument("--rootless", action="store_true", help="a config for rootless containers")
    command("features", "print the features this build supports, as JSON")
    return p


def _print_json(doc) -> None:
    sys.stdout.write(json.dumps(doc, indent=4) + "\n")  # as runc prints state and features


def _list(root: str, fmt: str, quiet: bool) -> None:
    from ocipy.container import list_containers

    found = list_containers(root)
    if quiet:
        sys.stdout.write("".join(f"{c['id']}\n" for c in found))
        return
    if fmt == "json":
        sys.stdout.write(json.dumps(found) + "\n")
        return
    # runc: tabwriter with minwidth 12, padding 3
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"])
             for c in found]
    widths = [max(12, *(len(r[i]) + 3 for r in rows)) for i in range(5)]
    for r in rows:
        sys.stdout.write("".join(cell.ljust(w) for cell, w in zip(r, widths)) + r[5] + "\n")


def _dispatch(args: argparse.Namespace) -> int:
    from ocipy import container

    cmd = args.command
    if cmd in ("create", "run"):
        if args.systemd_cgroup:
            raise OcipyError("--systemd-cgroup", "systemd cgroup management is not supported yet")
        options = dict(pid_file=args.pid_file, console_socket=args.console_socket,
                       no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring,
                       preserve_fds=args.preserve_fds)
        if cmd == "create":
            container.create(args.root, args.container_id, args.bundle, **options)
            return 0
        return container.run(args.root, args.container_id, args.bundle, detach=args.detach,
                             keep=args.keep, **options)
    if cmd == "exec":
        return _exec(args)
    if cmd == "start":
        container.start(args.root, args.container_id)
    elif cmd == "state":
        _print_json(container.state(args.root, args.container_id))
    elif cmd == "kill":
        from ocipy.signals import parse_signal

        sig = parse_signal(args.signal)
        container.kill(args.root, args.container_id, sig, all_processes=args.all)
    elif cmd == "delete":
        container.delete(args.root, args.container_id, force=args.force)
    elif cmd == "list":
        _list(args.root, args.format, args.quiet)
    elif cmd == "spec":
        from ocipy.spec import write_spec

        write_spec(args.bundle, args.rootless)
    elif cmd == "features":
        from ocipy.features import features

        _print_json(features())
    return 0


class ExecFailed(OcipyError):
    """runc exec exits 255 when the process could not be started."""


def _exec(args: argparse.Namespace) -> int:
    from ocipy import container
    from ocipy.state import load

    try:
        if args.process:
            try:
                with open(args.process) as f:
                    process = json.load(f)
            except (OSError, ValueError) as e:
                raise OcipyError(f'read the process file "{args.process}"', str(e)) from None
        else:
            _, record = load(args.root, args.container_id)
            base = (container._config_of(record).get("process") or {})
            argv = args.args[1:] if args.args[:1] == ["--"] else args.args
            process = container.exec_process_spec(
                base, args=argv, env=args.env, cwd=args.cwd, user=args.user,
                additional_gids=args.additional_gids, caps=args.cap,
                no_new_privs=args.no_new_privs, apparmor=args.apparmor,
                label=args.process_label, tty=args.tty)
        return container.exec_process(args.root, args.container_id, process,
                                      detach=args.detach, pid_file=args.pid_file,
                                      console_socket=args.console_socket,
                                      preserve_fds=args.preserve_fds)
    except OcipyError as e:
        raise ExecFailed(e.what, e.why, errno=e.errno) from None


def _version() -> str:
    import platform

    from ocipy import OCI_VERSION, __version__

    return f"ocipy version {__version__}\nspec: {OCI_VERSION}\npython: {platform.python_version()}\n"


def main(argv: list[str]) -> int:
    from ocipy.log import Log, set_current

    log = Log()
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
        log = Log(args.log, args.log_format, args.debug)
        set_current(log)
        if args.version:
            sys.stdout.write(_version())
            return 0
        if not args.command:
            parser.print_help()
            return 0
        log.debug(f"ocipy {' '.join(argv)}")
        return _dispatch(args)
    except ExecFailed as e:
        _fail(log, str(e))
        return 255
    except OcipyError as e:
        return _fail(log, str(e))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line, never a traceback
        if log.debug_enabled:
            import traceback

            traceback.print_exc()
        return _fail(log, f"internal error: {type(e).__name__}: {e}")


def _fail(log, message: str) -> int:
    log.error(message)
    sys.stderr.write(f"ocipy: {message}\n")
    return 1
