"""The command line: runc's, flag for flag, so containerd's shim, conmon and
dockerd can call ocipy where they call runc.  It only parses and calls
ocipy.container; every failure becomes one `ocipy: <what>: <why>` line on
stderr, exit status 1, and an error entry in the --log file.

The parser is a small table instead of argparse: every invocation pays for
its imports, and `ocipy state` must not pay 6 ms for argparse, re and enum.
Like runc (Go's flag package under urfave/cli) it takes `--opt value`,
`--opt=value` and single-dash long options (`-bundle`).
"""
from __future__ import annotations

import sys

from ocipy.errors import OcipyError

FLAG, VALUE, INT, LIST, INT_LIST = "flag", "value", "int", "list", "int_list"

# (names, dest, kind, default, help)
GLOBAL_OPTIONS = (
    (("--root",), "root", VALUE, None, "state directory (default /run/ocipy)"),
    (("--log",), "log", VALUE, None, "log file (default: none)"),
    (("--log-format",), "log_format", VALUE, "text", "log format: text or json"),
    (("--debug",), "debug", FLAG, False, "log every step with its duration (to --log)"),
    (("--systemd-cgroup",), "systemd_cgroup", FLAG, False,
     "let systemd manage cgroups (slice:prefix:name paths; needs systemd)"),
    (("--rootless",), "rootless", VALUE, "auto", "auto, true or false"),
    (("--criu",), "criu", VALUE, None, "(accepted for runc compatibility; unused)"),
    (("-v", "--version"), "version", FLAG, False, "print the version"),
    (("-h", "--help"), "help", FLAG, False, "print this help"),
)

_CREATE_OPTIONS = (
    (("-b", "--bundle"), "bundle", VALUE, ".", "bundle directory (default: .)"),
    (("--pid-file",), "pid_file", VALUE, None, "write the init's pid here"),
    (("--console-socket",), "console_socket", VALUE, None,
     "unix socket to send the pty master to"),
    (("--no-pivot",), "no_pivot", FLAG, False, "use MS_MOVE+chroot, not pivot_root"),
    (("--no-new-keyring",), "no_new_keyring", FLAG, False,
     "keep the caller's session keyring"),
    (("--preserve-fds",), "preserve_fds", INT, 0,
     "pass this many fds from 3 up to the container"),
    (("--explain",), "explain", FLAG, False,
     "print what create would do, step by step, and do none of it"),
    (("--format",), "format", VALUE, "text", "with --explain: text or json"),
)

# command -> (summary, options, positionals); a positional ending in "?" is
# optional, "..." takes the rest of the command line
COMMANDS = {
    "create": ("create a container and leave it waiting for start", _CREATE_OPTIONS, ("ID",)),
    "start": ("start the process of a created container", (), ("ID",)),
    "state": ("print the state of a container as JSON", (), ("ID",)),
    "kill": ("send a signal to a container's init (default TERM)",
             ((("-a", "--all"), "all", FLAG, False, "signal every process"),),
             ("ID", "SIGNAL?")),
    "delete": ("delete a stopped container",
               ((("-f", "--force"), "force", FLAG, False, "kill it first if it runs"),),
               ("ID",)),
    "run": ("create and start a container", _CREATE_OPTIONS + (
        (("-d", "--detach"), "detach", FLAG, False, "do not wait for it"),
        (("--keep",), "keep", FLAG, False, "keep it after it exits"),
    ), ("ID",)),
    "exec": ("run a new process inside a container", (
        (("-p", "--process"), "process", VALUE, None, "a process.json to run instead of ARGS"),
        (("-t", "--tty"), "tty", FLAG, False, "allocate a pseudo-TTY"),
        (("--console-socket",), "console_socket", VALUE, None, "unix socket for the pty master"),
        (("-d", "--detach"), "detach", FLAG, False, "do not wait for the process"),
        (("--pid-file",), "pid_file", VALUE, None, "write the process's pid here"),
        (("--cwd",), "cwd", VALUE, None, "working directory inside the container"),
        (("-e", "--env"), "env", LIST, None, "K=V to add to the environment"),
        (("-u", "--user"), "user", VALUE, None, "UID[:GID]"),
        (("-g", "--additional-gids"), "additional_gids", INT_LIST, None,
         "an additional group id"),
        (("-c", "--cap"), "cap", LIST, None, "add a capability"),
        (("--no-new-privs",), "no_new_privs", FLAG, False, "set no_new_privs"),
        (("--apparmor",), "apparmor", VALUE, None, "AppArmor profile"),
        (("--process-label",), "process_label", VALUE, None, "SELinux label"),
        (("--preserve-fds",), "preserve_fds", INT, 0,
         "pass this many fds from 3 up to the process"),
    ), ("ID", "ARGS...")),
    "pause": ("freeze every process of a container", (), ("ID",)),
    "resume": ("thaw a paused container", (), ("ID",)),
    "ps": ("list the processes of a container", (
        (("-f", "--format"), "format", VALUE, "table", "table or json (a JSON array of pids)"),
    ), ("ID", "ARGS...")),
    "update": ("change the resource limits of a running container", (
        (("-r", "--resources"), "resources", VALUE, None,
         "a LinuxResources JSON file, or - for stdin"),
        (("--memory",), "memory", VALUE, None, "memory limit (e.g. 512m)"),
        (("--memory-swap",), "memory_swap", VALUE, None, "memory+swap limit, -1 unlimited"),
        (("--memory-reservation",), "memory_reservation", VALUE, None, "memory soft limit"),
        (("--kernel-memory",), "kernel_memory", VALUE, None, "kernel memory limit"),
        (("--kernel-memory-tcp",), "kernel_memory_tcp", VALUE, None, "kernel TCP buffer limit"),
        (("--cpu-share", "--cpu-shares"), "cpu_shares", VALUE, None, "CPU shares"),
        (("--cpu-quota",), "cpu_quota", VALUE, None, "CFS quota (us)"),
        (("--cpu-period",), "cpu_period", VALUE, None, "CFS period (us)"),
        (("--cpu-burst",), "cpu_burst", VALUE, None, "CFS burst (us)"),
        (("--cpu-rt-runtime",), "cpu_rt_runtime", VALUE, None, "realtime runtime (us)"),
        (("--cpu-rt-period",), "cpu_rt_period", VALUE, None, "realtime period (us)"),
        (("--cpu-idle",), "cpu_idle", VALUE, None, "SCHED_IDLE for the cgroup (0 or 1)"),
        (("--cpuset-cpus",), "cpuset_cpus", VALUE, None, "CPUs to use (e.g. 0-1)"),
        (("--cpuset-mems",), "cpuset_mems", VALUE, None, "memory nodes to use"),
        (("--pids-limit",), "pids_limit", VALUE, None, "maximum number of processes"),
        (("--blkio-weight",), "blkio_weight", VALUE, None, "block IO weight (10-1000)"),
        (("--l3-cache-schema",), "l3_cache_schema", VALUE, None, "Intel RDT (unsupported)"),
        (("--mem-bw-schema",), "mem_bw_schema", VALUE, None, "Intel RDT (unsupported)"),
    ), ("ID",)),
    "events": ("print stats and OOM events of a container as JSON lines", (
        (("--stats",), "stats", FLAG, False, "print one stats event and exit"),
        (("--interval",), "interval", VALUE, "5s", "time between stats events (e.g. 5s)"),
    ), ("ID",)),
    "list": ("list containers", (
        (("-f", "--format"), "format", VALUE, "table", "table or json"),
        (("-q", "--quiet"), "quiet", FLAG, False, "print only ids"),
    ), ()),
    "spec": ("write a default config.json", (
        (("-b", "--bundle"), "bundle", VALUE, ".", "bundle directory (default: .)"),
        (("--rootless",), "rootless", FLAG, False, "a config for rootless containers"),
    ), ()),
    "features": ("print the features this build supports, as JSON", (), ()),
    "check": ("report whether this host is ready for containers (OK/WARN/FAIL per item)", (
        (("--format",), "format", VALUE, "text", "text or json"),
    ), ()),
    "validate": ("check a bundle without creating anything: every problem, with its JSON path", (
        (("-b", "--bundle"), "bundle", VALUE, ".", "bundle directory (default: .)"),
        (("--format",), "format", VALUE, "text", "text or json"),
    ), ("CONFIG?",)),
}

_CHOICES = {"log_format": ("text", "json"), "rootless": ("auto", "true", "false"),
            "format": ("table", "json", "text")}


class Args:
    """The parsed command line: one attribute per option, plus the positionals."""

    command: str | None = None

    def __init__(self, options) -> None:
        for _, dest, kind, default, _ in options:
            setattr(self, dest, [] if kind in (LIST, INT_LIST) else default)


class _UsageError(OcipyError):
    pass


def _lookup(options, arg: str):
    name, eq, value = arg.partition("=")
    if not name.startswith("--") and len(name) > 2:
        name = "-" + name  # Go's flag package: -bundle means --bundle
    for spec in options:
        if name in spec[0]:
            return spec, (value if eq else None)
    return None, None


def _set(args: Args, spec, value: str, where: str) -> None:
    """where: "" or "<command>: ", the prefix of an error message."""
    names, dest, kind, _, _ = spec
    if kind in (INT, INT_LIST):
        try:
            number = int(value)
        except ValueError:
            raise _UsageError(f"{where}invalid value \"{value}\" for {names[-1]}: "
                              "not a number") from None
        if kind == INT:
            setattr(args, dest, number)
        else:
            getattr(args, dest).append(number)
    elif kind == LIST:
        getattr(args, dest).append(value)
    else:
        if dest in _CHOICES and value not in _CHOICES[dest]:
            raise _UsageError(f"{where}invalid value \"{value}\" for {names[-1]}: "
                              f"choose from {', '.join(_CHOICES[dest])}")
        setattr(args, dest, value)


def parse(argv: list[str]) -> Args:
    args = Args(GLOBAL_OPTIONS)
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        i = _option(args, GLOBAL_OPTIONS, argv, i, "")
    if i == len(argv):
        return args
    command = argv[i]
    if command not in COMMANDS:
        raise _UsageError(f'unknown command "{command}"', "see ocipy --help")
    args.command = command
    _, options, positionals = COMMANDS[command]
    options = options + ((("-h", "--help"), "help", FLAG, False, "print this help"),)
    for spec in options:
        _, dest, kind, default, _ = spec
        setattr(args, dest, [] if kind in (LIST, INT_LIST) else default)
    found: list[str] = []
    i += 1
    rest_after_id = positionals[-1:] == ("ARGS...",)
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            found.extend(argv[i + 1:])
            break
        if rest_after_id and found:
            found.extend(argv[i:])  # exec: everything after the ID is the command
            break
        if arg.startswith("-") and arg != "-":
            i = _option(args, options, argv, i, command)
            continue
        found.append(arg)
        i += 1
    if args.help:
        return args
    _positionals(args, command, positionals, found)
    return args


def _option(args: Args, options, argv: list[str], i: int, command: str) -> int:
    where = f"{command}: " if command else ""
    spec, value = _lookup(options, argv[i])
    if spec is None:
        raise _UsageError(f"{where}flag provided but not defined: {argv[i].split('=')[0]}")
    if spec[2] == FLAG:
        if value is not None:
            setattr(args, spec[1], value.lower() in ("1", "true", "yes"))
        else:
            setattr(args, spec[1], True)
        return i + 1
    if value is None:
        if i + 1 >= len(argv):
            raise _UsageError(f"{where}flag needs an argument: {argv[i]}")
        value = argv[i + 1]
        i += 1
    _set(args, spec, value, where)
    return i + 1


def _positionals(args: Args, command: str, names, found: list[str]) -> None:
    required = [n for n in names if not n.endswith(("?", "..."))]
    if len(found) < len(required):
        raise _UsageError(f'"ocipy {command}" requires a container id'
                          if "ID" in required else f'"ocipy {command}" needs an argument')
    values = list(found)
    for name in names:
        dest = {"ID": "container_id", "SIGNAL?": "signal", "ARGS...": "args",
                "CONFIG?": "config"}[name]
        if name == "ARGS...":
            setattr(args, dest, values)
            values = []
        else:
            setattr(args, dest, values.pop(0) if values else None)
    if values:
        raise _UsageError(f'"ocipy {command}": unexpected argument "{values[0]}"')


def usage(command: str | None) -> str:
    def table(options) -> str:
        rows = []
        for names, _, kind, default, text in options:
            flag = ", ".join(names) + ("" if kind == FLAG else " VALUE")
            rows.append(f"   {flag:<28} {text}")
        return "\n".join(rows)

    if command is None:
        lines = ["usage: ocipy [global options] COMMAND [options] [arguments]", "",
                 "An OCI runtime with runc's command line.", "", "commands:"]
        lines += [f"   {name:<10} {summary}" for name, (summary, _, _) in COMMANDS.items()]
        lines += ["", "global options:", table(GLOBAL_OPTIONS)]
        return "\n".join(lines) + "\n"
    summary, options, positionals = COMMANDS[command]
    shown = " ".join(f"[{p[:-1]}]" if p.endswith("?") else p for p in positionals)
    lines = [f"usage: ocipy {command} [options] {shown}".rstrip(), "",
             summary]
    if options:
        lines += ["", "options:", table(options)]
    return "\n".join(lines) + "\n"


def _print_json(doc) -> None:
    from ocipy._fastjson import dumps

    sys.stdout.write(dumps(doc, indent=4) + "\n")  # as runc prints state and features


def _list(root: str, fmt: str, quiet: bool) -> None:
    from ocipy._fastjson import dumps
    from ocipy.container import list_containers

    found = list_containers(root)
    if quiet:
        sys.stdout.write("".join(f"{c['id']}\n" for c in found))
        return
    if fmt == "json":
        sys.stdout.write(dumps(found) + "\n")
        return
    # runc: tabwriter with minwidth 12, padding 3
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"])
             for c in found]
    widths = [max(12, *(len(r[i]) + 3 for r in rows)) for i in range(5)]
    for r in rows:
        sys.stdout.write("".join(cell.ljust(w) for cell, w in zip(r, widths)) + r[5] + "\n")


def _dispatch(args: Args) -> int:
    from ocipy import container

    cmd = args.command
    if cmd in ("create", "run"):
        options = dict(pid_file=args.pid_file, console_socket=args.console_socket,
                       no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring,
                       preserve_fds=args.preserve_fds)
        options["systemd_cgroup"] = args.systemd_cgroup
        if args.explain:
            return _explain(args)
        if cmd == "create":
            container.create(args.root, args.container_id, args.bundle, **options)
            return 0
        return container.run(args.root, args.container_id, args.bundle, detach=args.detach,
                             keep=args.keep, **options)
    if cmd == "exec":
        return _exec(args)
    if cmd == "validate":
        return _validate(args)
    if cmd == "check":
        return _check(args)
    if cmd in ("pause", "resume"):
        getattr(container, cmd)(args.root, args.container_id)
        return 0
    if cmd == "ps":
        return _ps(args)
    if cmd == "update":
        container.update(args.root, args.container_id, _update_resources(args))
        return 0
    if cmd == "events":
        container.events(args.root, args.container_id, stats_once=args.stats,
                         interval=_duration(args.interval))
        return 0
    if cmd == "start":
        container.start(args.root, args.container_id)
    elif cmd == "state":
        _print_json(container.state(args.root, args.container_id))
    elif cmd == "kill":
        from ocipy.signals import parse_signal

        sig = parse_signal(args.signal or "TERM")
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


def _check(args: Args) -> int:
    from ocipy.check import FAIL, check, render

    if args.format not in ("text", "json"):
        raise _UsageError("--format", f'"{args.format}" is not text or json')
    items = check()
    if args.format == "json":
        _print_json(items)
    else:
        sys.stdout.write(render(items))
    failed = [i["name"] for i in items if i["status"] == FAIL]
    if failed:
        raise OcipyError("check", f"this host is not ready: {', '.join(failed)}")
    return 0


def _validate(args: Args) -> int:
    from ocipy.validate import render, validate

    if args.format not in ("text", "json"):
        raise _UsageError("--format", f'"{args.format}" is not text or json')
    config_file, problems = validate(args.bundle, args.config)
    if args.format == "json":
        _print_json({"config": config_file, "valid": not problems,
                     "problems": [p.to_dict() for p in problems]})
    else:
        sys.stdout.write(render(config_file, problems))
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise OcipyError(f"validate {config_file}", count)
    return 0


def _explain(args: Args) -> int:
    from ocipy.explain import explain, render

    doc = explain(args.bundle, args.container_id, no_pivot=args.no_pivot,
                  no_new_keyring=args.no_new_keyring, preserve_fds=args.preserve_fds,
                  systemd_cgroup=args.systemd_cgroup)
    if args.format == "json":
        _print_json(doc)
    elif args.format == "text":
        sys.stdout.write(render(doc))
    else:
        raise _UsageError("--format", f'"{args.format}" is not text or json')
    return 0


def _ps(args: Args) -> int:
    """runc ps: json is the pid array containerd parses; table filters `ps`."""
    from ocipy import container

    pids = container.processes(args.root, args.container_id)
    if args.format == "json":
        sys.stdout.write("[" + ",".join(map(str, pids)) + "]\n")
        return 0
    import subprocess

    options = args.args or ["-ef"]
    try:
        out = subprocess.run(["ps", *options], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise OcipyError("ps", str(e)) from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise OcipyError("ps", "its output has no PID column")
    column = header.index("PID")
    wanted = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            sys.stdout.write(line + "\n")
    return 0


_UPDATE_FLAGS = ("memory", "memory_swap", "memory_reservation", "kernel_memory",
                 "kernel_memory_tcp", "cpu_shares", "cpu_quota", "cpu_period", "cpu_burst",
                 "cpu_rt_runtime", "cpu_rt_period", "cpu_idle", "cpuset_cpus", "cpuset_mems",
                 "pids_limit", "blkio_weight", "l3_cache_schema", "mem_bw_schema")


def _update_resources(args: Args) -> dict:
    """--resources FILE|- (containerd passes -, podman a file), else the flags."""
    from ocipy._fastjson import loads
    from ocipy.cgroups.flags import resources_from_update_flags

    if args.resources:
        try:
            if args.resources == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(args.resources, "rb") as f:
                    data = f.read()
            resources = loads(data)
        except (OSError, ValueError) as e:
            raise OcipyError(f'read the resources "{args.resources}"', str(e)) from None
        if not isinstance(resources, dict):
            raise OcipyError(f'read the resources "{args.resources}"',
                             "not a LinuxResources JSON object")
        return resources
    return resources_from_update_flags(**{k: getattr(args, k) for k in _UPDATE_FLAGS})


def _duration(text: str) -> float:
    """Go's time.Duration syntax, as runc events --interval takes it."""
    units = (("ms", 0.001), ("us", 0.000001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix):
            try:
                value = float(text[: -len(suffix)]) * scale
            except ValueError:
                break
            if value > 0:
                return value
            break
    raise OcipyError(f'invalid duration "{text}"', "use e.g. 5s, 500ms, 1m")


class ExecFailed(OcipyError):
    """runc exec exits 255 when the process could not be started."""


def _exec(args: Args) -> int:
    from ocipy import container

    try:
        if args.process:
            from ocipy._fastjson import loads

            try:
                with open(args.process, "rb") as f:
                    process = loads(f.read())
            except (OSError, ValueError) as e:
                raise OcipyError(f'read the process file "{args.process}"', str(e)) from None
        else:
            process = container.process_for_exec(
                args.root, args.container_id, args=args.args, env=args.env, cwd=args.cwd,
                user=args.user, additional_gids=args.additional_gids, caps=args.cap,
                no_new_privs=args.no_new_privs, apparmor=args.apparmor,
                label=args.process_label, tty=args.tty)
        return container.exec_process(args.root, args.container_id, process,
                                      detach=args.detach, pid_file=args.pid_file,
                                      console_socket=args.console_socket,
                                      preserve_fds=args.preserve_fds)
    except OcipyError as e:
        raise ExecFailed(e.what, e.why, errno=e.errno) from None


def _version() -> str:
    from ocipy import OCI_VERSION, __version__

    python = ".".join(map(str, sys.version_info[:3]))
    return f"ocipy version {__version__}\nspec: {OCI_VERSION}\npython: {python}\n"


def main(argv: list[str]) -> int:
    from ocipy.log import Log, set_current

    log = Log()
    try:
        args = parse(argv)
        if args.root is None:
            from ocipy.state import DEFAULT_ROOT

            args.root = DEFAULT_ROOT
        log = Log(args.log, args.log_format, args.debug)
        set_current(log)
        if args.version:
            sys.stdout.write(_version())
            return 0
        if args.help or not args.command:
            sys.stdout.write(usage(args.command))
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


# control characters in a message (a config value with a newline, say)
# would break the one-line rule: write them as escapes
_ONE_LINE = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


def _fail(log, message: str) -> int:
    message = message.translate(_ONE_LINE)
    log.error(message)
    sys.stderr.write(f"ocipy: {message}\n")
    return 1
