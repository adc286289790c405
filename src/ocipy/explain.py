"""`ocipy create --explain`: what `create` would do, without doing any of it.

The same code as `create` makes the plan (config.load_config, plan.plan_container,
cgroups.manager_for, cgroups.resources.plan, hooks.plan_hooks); nothing here
writes, mounts, clones or creates a cgroup.  The result is a document (for
`--format json`) and its rendering as numbered steps in the order `create`
takes them.
"""
from __future__ import annotations

import os

from ocipy import mountopts as mo

# mount(2) flags by name, for people (MS_REC and the propagation flags are
# shown as rbind/rprivate... by their options, not here)
_FLAG_NAMES = (
    (mo.MS_RDONLY, "ro"), (mo.MS_NOSUID, "nosuid"), (mo.MS_NODEV, "nodev"),
    (mo.MS_NOEXEC, "noexec"), (mo.MS_SYNCHRONOUS, "sync"), (mo.MS_REMOUNT, "remount"),
    (mo.MS_MANDLOCK, "mand"), (mo.MS_DIRSYNC, "dirsync"), (mo.MS_NOSYMFOLLOW, "nosymfollow"),
    (mo.MS_NOATIME, "noatime"), (mo.MS_NODIRATIME, "nodiratime"), (mo.MS_BIND, "bind"),
    (mo.MS_REC, "rec"), (mo.MS_UNBINDABLE, "unbindable"), (mo.MS_PRIVATE, "private"),
    (mo.MS_SLAVE, "slave"), (mo.MS_SHARED, "shared"), (mo.MS_RELATIME, "relatime"),
    (mo.MS_STRICTATIME, "strictatime"), (mo.MS_LAZYTIME, "lazytime"),
)


# runtime-spec config.md "POSIX-platform Hooks", in the order they run
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in _FLAG_NAMES if flags & bit]


def explain(bundle: str, container_id: str, *, no_pivot: bool = False,
            no_new_keyring: bool = False, preserve_fds: int = 0,
            systemd_cgroup: bool = False) -> dict:
    """The plan of `create` for this bundle, as plain data."""
    from ocipy import state as st
    from ocipy.config import load_config
    from ocipy.plan import NAMESPACE_FLAGS, Host, plan_container

    st.check_id(container_id)
    bundle = os.path.abspath(bundle)
    config = load_config(bundle)
    plan = plan_container(config, bundle, container_id=container_id, host=Host(),
                          no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                          preserve_fds=preserve_fds)
    linux = config.get("linux") or {}
    cgroups = _cgroups(linux, container_id, systemd_cgroup)
    # as create does once the cgroups exist: without a cgroup namespace a
    # cgroup mount becomes binds of the container's own directories
    from ocipy.plan import bind_cgroup_hierarchies

    bind_cgroup_hierarchies(plan, list(cgroups["dirs"].values()))
    flags = {flag: name for name, flag in NAMESPACE_FLAGS.items()}
    created = sorted(name for flag, name in flags.items()
                     if (plan["clone_flags"] | plan["unshare_flags"]) & flag)
    if plan.get("new_cgroupns"):
        created.append("cgroup")
    doc: dict = {
        "id": container_id,
        "bundle": bundle,
        "namespaces": {
            "create": created,
            "join": [{"type": ns.get("type"), "path": ns.get("path"),
                      "config": f"linux.namespaces[{i}]"}
                     for i, ns in enumerate(linux.get("namespaces") or []) if ns.get("path")],
            "uid_mappings": plan.get("uid_mappings", []),
            "gid_mappings": plan.get("gid_mappings", []),
            "time_offsets": plan.get("timens_offsets"),
        },
        "cgroups": cgroups,
        "rootfs": {
            "path": plan["rootfs"],
            "readonly": plan["root_readonly"],
            "switch": "chroot (--no-pivot)" if no_pivot else
                      ("chroot (no mount namespace)" if plan["host_mount_ns"] else "pivot_root"),
            "propagation": linux.get("rootfsPropagation") or "rslave (default)",
            "mounts": [_mount(m) for m in plan["mounts"]],
            "devices": [_device(d) for d in plan["devices"]] if plan["make_devices"] else [],
            "masked_paths": plan["masked"],
            "readonly_paths": plan["readonly"],
        },
        "identity": {"hostname": plan.get("hostname"), "domainname": plan.get("domainname"),
                     "sysctl": dict(plan.get("sysctl") or [])},
        "process": _process(config.get("process"), plan.get("process")),
        "hooks": {kind: [h.get("path") for h in (config.get("hooks") or {}).get(kind) or []]
                  for kind in HOOK_KINDS if (config.get("hooks") or {}).get(kind)},
        "seccomp": seccomp_summary(linux.get("seccomp")),
    }
    proc = doc["process"]
    if proc is not None:
        path_env = next((e[5:] for e in proc["env"] if e.startswith("PATH=")), None)
        doc["executable"] = resolve_executable(plan["rootfs"], proc["args"][0], path_env,
                                               proc["cwd"])
    return doc


def _cgroups(linux: dict, container_id: str, systemd: bool) -> dict:
    from ocipy import cgroups
    from ocipy.cgroups import devices
    from ocipy.cgroups import resources as res

    manager = cgroups.manager_for(linux.get("cgroupsPath"), container_id, systemd=systemd)
    state = manager.to_state()
    version = state["version"]
    writes = res.plan(linux.get("resources") or {}, version)
    if version == "v1":
        dirs = state["dirs"]
    else:
        dirs = {"unified": state["dir"]}
    rules = devices.container_rules((linux.get("resources") or {}).get("devices"))
    return {
        "version": version,
        "dirs": dirs,
        "writes": [{"file": w.file, "value": w.value, "config": w.path,
                    "dir": dirs.get(w.controller) or dirs.get("unified")} for w in writes],
        "devices": [("allow " if r.allow else "deny ") + _rule(r) for r in rules],
    }


def _rule(rule) -> str:
    major = "*" if rule.major is None or rule.major < 0 else str(rule.major)
    minor = "*" if rule.minor is None or rule.minor < 0 else str(rule.minor)
    return f"{rule.type} {major}:{minor} {rule.access}"


def _mount(m: dict) -> dict:
    out = {"destination": m["dest"], "config": f"mounts[{m['index']}]" if m["index"] >= 0
           else "ocipy", "type": "bind" if m["is_bind"] else m.get("fstype"),
           "source": m.get("source"), "flags": flag_names(m.get("flags", 0))}
    if m.get("data"):
        out["data"] = m["data"]
    if m.get("remount_flags"):
        out["then_remount"] = flag_names(m["remount_flags"])
    if m.get("propagation"):
        out["propagation"] = [" ".join(flag_names(p)) for p in m["propagation"]]
    return out


def _device(d: dict) -> dict:
    import stat

    kind = "b" if stat.S_ISBLK(d["mode"]) else "c"
    return {"path": d["path"], "type": kind, "major": d["major"], "minor": d["minor"],
            "mode": f"{d['mode'] & 0o7777:04o}", "uid": d["uid"], "gid": d["gid"],
            "config": f"linux.devices[{d['index']}]" if d["index"] >= 0 else "default"}


def _process(config_process: dict | None, planned: dict | None) -> dict | None:
    if not planned:
        return None
    from ocipy.capabilities import mask_to_caps

    caps = planned.get("caps")
    sets = {name: mask_to_caps(caps[name]) for name in
            ("bounding", "effective", "inheritable", "permitted", "ambient")} if caps else None
    rlimits = [{"type": r.get("type"), "soft": r.get("soft"), "hard": r.get("hard")}
               for r in (config_process or {}).get("rlimits") or []]
    return {
        "args": planned["args"],
        "env": planned["env"],
        "cwd": planned["cwd"],
        "user": {"uid": planned["uid"], "gid": planned["gid"],
                 "additional_gids": planned["groups"], "umask": f"{planned['umask']:04o}"},
        "terminal": planned["terminal"],
        "capabilities": sets,
        "no_new_privileges": planned["no_new_privs"],
        "rlimits": rlimits,
        "oom_score_adj": planned["oom_score_adj"],
        "apparmor_profile": planned["apparmor"],
        "selinux_label": planned["selinux"],
        "seccomp": None if not planned.get("seccomp") else {
            "bpf_instructions": len(planned["seccomp"]["filter"]) // 8},
    }


def seccomp_summary(seccomp: dict | None) -> dict | None:
    """linux.seccomp as a person reads it: the default, and rules per action."""
    if not seccomp:
        return None
    per_action: dict[str, int] = {}
    for rule in seccomp.get("syscalls") or []:
        action = rule.get("action", "?")
        per_action[action] = per_action.get(action, 0) + len(rule.get("names") or [])
    return {"default_action": seccomp.get("defaultAction"),
            "architectures": seccomp.get("architectures") or [],
            "flags": seccomp.get("flags") or [],
            "syscalls_per_action": per_action,
            "listener_path": seccomp.get("listenerPath")}


def resolve_executable(rootfs: str, program: str, path_env: str | None, cwd: str) -> str | None:
    """Where execve would find ``program`` inside the rootfs (the child's
    lookup), without following a symlink out of it; None when not found."""
    from ocipy.inroot import resolve

    if "/" in program:
        candidates = [program if program.startswith("/") else os.path.join(cwd, program)]
    else:
        candidates = [os.path.join(d or ".", program) if d.startswith("/") else
                      os.path.join(cwd, d, program)
                      for d in (path_env if path_env is not None else
                                "/usr/local/bin:/usr/bin:/bin").split(":")]
    for candidate in candidates:
        host_path = resolve(rootfs, candidate)
        if host_path and os.path.isfile(host_path) and os.access(host_path, os.X_OK):
            return candidate
    return None


def render(doc: dict) -> str:
    """The document as numbered steps, in create's order."""
    out: list[str] = []
    add = out.append
    add(f'ocipy create --explain: container "{doc["id"]}" from {doc["bundle"]}')
    add("(nothing was created, mounted or started)")
    ns = doc["namespaces"]
    add("")
    add("1. namespaces")
    add(f"   create: {', '.join(ns['create']) or '(none)'}"
        + (" (cgroup: after joining the cgroups)" if "cgroup" in ns["create"] else ""))
    for j in ns["join"]:
        add(f"   join:   {j['type']} at {j['path']} ({j['config']})")
    for key in ("uid_mappings", "gid_mappings"):
        for container, host, size in ns[key]:
            add(f"   {key[:3]} map: container {container} -> host {host} ({size} ids)")
    if ns.get("time_offsets"):
        add(f"   time offsets: {ns['time_offsets'].strip()}")
    cg = doc["cgroups"]
    add("")
    add(f"2. cgroups ({cg['version']}); the container's process joins them before it starts")
    for controller, directory in sorted(cg["dirs"].items()):
        add(f"   {controller or '(cgroup2)':<12} {directory}")
    for w in cg["writes"]:
        add(f"   write {w['file']} = {w['value']}   ({w['config']})")
    add(f"   devices: {'; '.join(cg['devices'])}")
    root = doc["rootfs"]
    add("")
    add(f"3. root filesystem {root['path']}{' (read-only)' if root['readonly'] else ''}")
    add(f"   propagation {root['propagation']}, then {root['switch']}")
    for m in root["mounts"]:
        extra = f" data={m['data']}" if m.get("data") else ""
        then = f", then remount {','.join(m['then_remount'])}" if m.get("then_remount") else ""
        prop = f", propagation {','.join(m['propagation'])}" if m.get("propagation") else ""
        if m["source"] is None and "remount" in m["flags"]:
            add(f"   remount {m['destination']} "
                f"flags={','.join(f for f in m['flags'] if f != 'remount')}   ({m['config']})")
            continue
        add(f"   mount {m['source']} on {m['destination']} type {m['type']} "
            f"flags={','.join(m['flags']) or '-'}{extra}{then}{prop}   ({m['config']})")
    for d in root["devices"]:
        add(f"   device {d['path']} {d['type']} {d['major']}:{d['minor']} mode {d['mode']} "
            f"uid {d['uid']} gid {d['gid']}   ({d['config']})")
    if root["masked_paths"]:
        add(f"   mask: {', '.join(root['masked_paths'])}")
    if root["readonly_paths"]:
        add(f"   read-only: {', '.join(root['readonly_paths'])}")
    ident = doc["identity"]
    add("")
    add("4. identity")
    add(f"   hostname: {ident['hostname'] or '(unchanged)'}"
        + (f", domainname: {ident['domainname']}" if ident.get("domainname") else ""))
    for key, value in ident["sysctl"].items():
        add(f"   sysctl {key} = {value}")
    proc = doc["process"]
    add("")
    add("5. process")
    if proc is None:
        add("   (config.json has no process: start would fail)")
    else:
        u = proc["user"]
        add(f"   user: uid {u['uid']} gid {u['gid']} groups {u['additional_gids'] or '-'} "
            f"umask {u['umask']}")
        for name, caps in (proc["capabilities"] or {}).items():
            add(f"   capabilities {name}: {', '.join(caps) or '(none)'}")
        if proc["capabilities"] is None:
            add("   capabilities: unchanged (process.capabilities is absent)")
        add(f"   no_new_privileges: {proc['no_new_privileges']}")
        for r in proc["rlimits"]:
            add(f"   rlimit {r['type']}: soft {r['soft']} hard {r['hard']}")
        if proc["oom_score_adj"] is not None:
            add(f"   oom_score_adj: {proc['oom_score_adj']}")
        for key in ("apparmor_profile", "selinux_label"):
            if proc[key]:
                add(f"   {key.replace('_', ' ')}: {proc[key]}")
        sc = doc.get("seccomp")
        if sc:
            rules = ", ".join(f"{n} {a}" for a, n in sorted(sc["syscalls_per_action"].items()))
            add(f"   seccomp (loaded last): default {sc['default_action']}; "
                f"syscalls: {rules or 'none'}; architectures "
                f"{', '.join(sc['architectures']) or 'native'}"
                + (f"; flags {', '.join(sc['flags'])}" if sc["flags"] else "")
                + (f"; listener {sc['listener_path']}" if sc.get("listener_path") else ""))
            if proc["seccomp"]:
                add(f"   seccomp filter: {proc['seccomp']['bpf_instructions']} BPF instructions")
        add(f"   terminal: {proc['terminal']}")
    hooks = doc["hooks"]
    add("")
    add("6. hooks")
    if not hooks:
        add("   (none)")
    for kind, paths in hooks.items():
        add(f"   {kind}: {', '.join(paths)}")
    add("")
    add("7. execve, once `start` releases the init")
    if proc is None:
        add("   (no process)")
    else:
        found = doc.get("executable")
        add(f"   {found or proc['args'][0] + ' (NOT FOUND in the rootfs: create would fail)'}")
        add(f"   argv: {proc['args']}")
        add(f"   cwd:  {proc['cwd']}")
        add(f"   env:  {proc['env']}")
    return "\n".join(out) + "\n"
