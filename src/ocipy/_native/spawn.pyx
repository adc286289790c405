# cython: language_level=3, boundscheck=False, wraparound=False
"""Copy a container plan into C memory and clone the child that executes it.

The plan is the plain dict built by ocipy.process (see its docstring for the
keys).  Every string the child will read is a bytes object kept alive in
``keep`` until after the clone; the child gets its own copy of the address
space, so it reads them without touching a Python object.
"""
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from libc.stdint cimport uint64_t
from posix.types cimport gid_t
from posix.unistd cimport close, getpid
from cpython.bytes cimport PyBytes_AS_STRING

from ocipy._native.child cimport (
    oci_plan, oci_mount, oci_device, oci_msg, oci_hook, oci_spawn, OCI_MAX_JOINS, OCI_MAX_RLIMITS, OCI_DETAIL_LEN,
)

cdef extern from "<sys/socket.h>" nogil:
    int socketpair(int domain, int type, int protocol, int sv[2])
    int setsockopt(int sockfd, int level, int optname, const void *optval, unsigned int optlen)
    enum:
        AF_UNIX
        SOCK_SEQPACKET
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_PASSCRED

cdef extern from "<fcntl.h>" nogil:
    int fcntl(int fd, int cmd, ...)
    enum:
        F_DUPFD_CLOEXEC

cdef extern from "<errno.h>" nogil:
    int errno
    int ECONNRESET
    int EINTR

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum:
        POLLIN

from cpython.exc cimport PyErr_CheckSignals

cdef extern from "Python.h":
    bytes PyUnicode_EncodeFSDefault(object unicode)


cdef bytes _fs(path):
    """A path as the kernel takes it: str in the file system encoding with
    surrogateescape (os.fsencode, without importing os), bytes as they are."""
    return PyUnicode_EncodeFSDefault(path) if isinstance(path, str) else path


def poll_in(int fd, int timeout_ms):
    """poll(2) one fd for input; its revents, 0 on timeout.  For `start`,
    which would otherwise load the select module (~0.3 ms) for this alone.
    A signal runs its Python handler, then the wait starts over."""
    cdef pollfd p
    cdef int r
    p.fd = fd
    p.events = POLLIN
    while True:
        p.revents = 0
        with nogil:
            r = poll(&p, 1, timeout_ms)
        if r >= 0:
            return p.revents if r else 0
        if errno != EINTR:
            raise OSError(errno, "poll")
        PyErr_CheckSignals()


cdef class _Arena:
    """Owns the C arrays of one plan; the bytes they point into live in keep."""
    cdef list keep
    cdef list blocks

    def __cinit__(self):
        self.keep = []
        self.blocks = []

    cdef const char *s(self, object value) except? NULL:
        if value is None:
            return NULL
        cdef bytes b = value if isinstance(value, bytes) else (<str>value).encode()
        self.keep.append(b)
        return PyBytes_AS_STRING(b)

    cdef void *alloc(self, size_t n, size_t size) except NULL:
        cdef void *mem = calloc(n + 1, size)
        if mem == NULL:
            raise MemoryError()
        self.blocks.append(<size_t>mem)
        return mem

    cdef const char **strings(self, list values) except NULL:
        cdef const char **arr = <const char **>self.alloc(len(values), sizeof(char *))
        cdef Py_ssize_t i
        for i in range(len(values)):
            arr[i] = self.s(values[i])
        return arr

    def __dealloc__(self):
        for mem in self.blocks:
            free(<void *><size_t>mem)


cdef oci_hook *_hooks(_Arena arena, list hooks) except NULL:
    cdef oci_hook *arr = <oci_hook *>arena.alloc(len(hooks), sizeof(oci_hook))
    cdef Py_ssize_t i
    for i, h in enumerate(hooks):
        arr[i].path = arena.s(h["path"])
        arr[i].argv = <char *const *>arena.strings(list(h["args"]))
        arr[i].envp = <char *const *>arena.strings(list(h["env"]))
        arr[i].timeout = h.get("timeout") or 0
    return arr


cdef int _high_fd(int fd, int floor) except -1:
    """Move an internal fd above the range of fds preserved for the container."""
    if fd >= floor:
        return fd
    cdef int moved = fcntl(fd, F_DUPFD_CLOEXEC, floor)
    if moved < 0:
        raise OSError(errno, "fcntl(F_DUPFD_CLOEXEC)")
    close(fd)
    return moved


cdef extern from *:
    """
    #include <sys/syscall.h>
    #include <unistd.h>
    #include <fcntl.h>
    #ifndef SYS_open_tree
    #define SYS_open_tree 428
    #endif
    #define OCIPY_OPEN_TREE_CLONE 1
    #define OCIPY_AT_RECURSIVE 0x8000
    static int ocipy_open_tree_clone(const char *path, int recursive)
    {
        int flags = OCIPY_OPEN_TREE_CLONE | O_CLOEXEC | (recursive ? OCIPY_AT_RECURSIVE : 0);
        return (int)syscall(SYS_open_tree, AT_FDCWD, path, flags);
    }
    """
    int ocipy_open_tree_clone(const char *path, int recursive) nogil


def open_tree_clone(path, bint recursive):
    """A detached copy of the mount tree at path (open_tree(2) OPEN_TREE_CLONE)."""
    cdef bytes b = _fs(path)
    cdef int fd = ocipy_open_tree_clone(b, recursive)
    if fd < 0:
        raise OSError(errno, f"open_tree {path}")
    return fd


cdef extern from *:
    """
    #include <sys/syscall.h>
    #include <unistd.h>
    #include <fcntl.h>
    #include <errno.h>
    #ifndef MFD_CLOEXEC
    #define MFD_CLOEXEC 0x0001U
    #define MFD_ALLOW_SEALING 0x0002U
    #endif
    #ifndef MFD_EXEC
    #define MFD_EXEC 0x0010U
    #endif
    #ifndef F_ADD_SEALS
    #define F_ADD_SEALS 1033
    #define F_SEAL_SEAL 0x0001
    #define F_SEAL_SHRINK 0x0002
    #define F_SEAL_GROW 0x0004
    #define F_SEAL_WRITE 0x0008
    #endif
    extern const unsigned char oci_init_image[] __attribute__((visibility("hidden")));
    extern const unsigned char oci_init_image_end[] __attribute__((visibility("hidden")));

    /* ocipy-init in a sealed memfd: nothing can write to it, not even
     * through /proc/<pid>/exe from inside the container (see exec_init in
     * child.c).  -errno on failure. */
    static int ocipy_init_memfd(void)
    {
        /* MFD_EXEC: kernels >= 6.3 may default memfds to non-executable */
        int fd = (int)syscall(SYS_memfd_create, "ocipy-init",
                              MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
        if (fd < 0 && errno == EINVAL)
            fd = (int)syscall(SYS_memfd_create, "ocipy-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
            return -errno;
        const unsigned char *at = oci_init_image;
        while (at < oci_init_image_end) {
            ssize_t n = write(fd, at, (size_t)(oci_init_image_end - at));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                int saved = n < 0 ? errno : EIO;
                close(fd);
                return -saved;
            }
            at += n;
        }
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
            int saved = errno;
            close(fd);
            return -saved;
        }
        return fd;
    }
    """
    int ocipy_init_memfd() nogil


def spawn(dict plan):
    """Clone the container's first process; return (pid, parent's sync socket fd).

    Raises OSError when clone itself fails; every later failure of the child
    arrives as a message on the sync socket.  Every fd the plan hands in is
    spawn's from the call on: closed once the child has its copies, or on the
    way out of any failure before that.
    """
    owned = handed_in(plan)
    try:
        return _spawn(plan, owned)
    except BaseException:
        for fd in owned:
            close(fd)
        raise


def handed_in(dict plan) -> list:
    """The fds a plan hands to spawn (which closes them, whatever happens)."""
    fds = [fd for fd, _, _ in plan.get("joins", ())]
    fds += [m["source_fd"] for m in plan.get("mounts", []) if m.get("source_fd", -1) >= 0]
    for key in ("fifo_fd", "console_fd", "seccomp_listener_fd", "cgroup_fd", "cgroup_procs_fd"):
        if plan.get(key, -1) >= 0:
            fds.append(plan[key])
    fds += [fd for fd, _ in plan.get("cgroup_tasks", [])]
    return fds


cdef int _own_high(list owned, int fd, int floor) except -2:
    """_high_fd for an fd of ``owned``, which follows it to its new number;
    -1 (none) stays -1."""
    if fd < 0:
        return -1
    cdef int moved = _high_fd(fd, floor)
    if moved != fd:
        owned[owned.index(fd)] = moved
    return moved


def _spawn(dict plan, list owned):
    cdef _Arena arena = _Arena()
    cdef oci_plan *p = <oci_plan *>arena.alloc(1, sizeof(oci_plan))
    cdef int floor = 3 + <int>plan.get("preserve_fds", 0)
    cdef int sv[2]
    cdef Py_ssize_t i
    cdef int one = 1
    cdef oci_mount *m
    cdef oci_device *d
    cdef gid_t *groups

    p.clone_flags = plan.get("clone_flags", 0)
    p.unshare_flags = plan.get("unshare_flags", 0)
    joins = plan.get("joins", ())
    if len(joins) > OCI_MAX_JOINS:
        raise ValueError("too many namespaces to join")
    for i, (fd, nstype, index) in enumerate(joins):
        p.joins[i].fd = _own_high(owned, fd, floor)
        p.joins[i].nstype = nstype
        p.joins[i].index = index
    p.n_joins = len(joins)
    p.new_userns = plan.get("new_userns", False)
    p.new_cgroupns = plan.get("new_cgroupns", False)
    p.fork_after_ns = plan.get("fork_after_ns", False)
    p.timens_offsets = arena.s(plan.get("timens_offsets"))
    p.keyring = arena.s(plan.get("keyring"))
    p.fifo_fd = _own_high(owned, plan.get("fifo_fd", -1), floor)
    p.console_fd = _own_high(owned, plan.get("console_fd", -1), floor)
    rows, cols = plan.get("console_size") or (0, 0)
    p.console_rows = rows
    p.console_cols = cols

    p.setup_rootfs = plan.get("setup_rootfs", False)
    p.rootfs = arena.s(plan.get("rootfs"))
    p.rootfs_propagation = plan.get("rootfs_propagation", 0)
    p.initial_propagation = plan.get("initial_propagation", 0)
    p.root_readonly = plan.get("root_readonly", False)
    p.no_pivot = plan.get("no_pivot", False)
    p.host_mount_ns = plan.get("host_mount_ns", False)

    mounts = plan.get("mounts", [])
    p.mounts = <oci_mount *>arena.alloc(len(mounts), sizeof(oci_mount))
    p.n_mounts = len(mounts)
    for i, mnt in enumerate(mounts):
        m = &p.mounts[i]
        m.source = arena.s(mnt.get("source"))
        m.source_fd = _own_high(owned, mnt.get("source_fd", -1), floor)
        m.dest = arena.s(mnt["dest"])
        m.fstype = arena.s(mnt.get("fstype"))
        m.data = arena.s(mnt.get("data") or None)
        m.flags = mnt.get("flags", 0)
        m.remount_flags = mnt.get("remount_flags", 0)
        prop = mnt.get("propagation", ())
        for j in range(min(len(prop), 4)):
            m.propagation[j] = prop[j]
        m.n_propagation = min(len(prop), 4)
        m.is_bind = mnt.get("is_bind", False)
        m.dest_is_file = mnt.get("dest_is_file", False)
        m.no_symlink = mnt.get("no_symlink", False)
        m.index = mnt.get("index", -1)

    p.make_devices = plan.get("make_devices", False)
    p.bind_devices = plan.get("bind_devices", False)
    devices = plan.get("devices", [])
    p.devices = <oci_device *>arena.alloc(len(devices), sizeof(oci_device))
    p.n_devices = len(devices)
    for i, dev in enumerate(devices):
        d = &p.devices[i]
        d.path = arena.s(dev["path"])
        d.mode = dev["mode"]
        d.major = dev["major"]
        d.minor = dev["minor"]
        d.uid = dev.get("uid", 0)
        d.gid = dev.get("gid", 0)
        d.index = dev.get("index", -1)

    masked = plan.get("masked", [])
    p.masked = arena.strings(masked)
    p.n_masked = len(masked)
    readonly = plan.get("readonly", [])
    p.readonly_paths = arena.strings(readonly)
    p.n_readonly = len(readonly)
    p.hostname = arena.s(plan.get("hostname"))
    p.domainname = arena.s(plan.get("domainname"))
    sysctl = plan.get("sysctl", [])
    p.sysctl_paths = arena.strings([k for k, _ in sysctl])
    p.sysctl_values = arena.strings([v for _, v in sysctl])
    p.n_sysctl = len(sysctl)

    proc = plan.get("process")
    if proc is not None:
        p.has_process = 1
        p.argv = <char *const *>arena.strings(list(proc["args"]))
        p.envp = <char *const *>arena.strings(list(proc["env"]))
        p.path_env = arena.s(proc.get("path_env"))
        p.cwd = arena.s(proc.get("cwd"))
        rlimits = proc.get("rlimits", [])
        if len(rlimits) > OCI_MAX_RLIMITS:
            raise ValueError("too many rlimits")
        for i, (res, soft, hard) in enumerate(rlimits):
            p.rlimit_resource[i] = res
            p.rlimits[i].rlim_cur = soft
            p.rlimits[i].rlim_max = hard
        p.n_rlimits = len(rlimits)
        oom = proc.get("oom_score_adj")
        if oom is not None:
            p.has_oom_score_adj = 1
            p.oom_score_adj = oom
        p.umask = proc.get("umask", 0o022)
        p.uid = proc.get("uid", 0)
        p.gid = proc.get("gid", 0)
        gids = proc.get("groups", [])
        groups = <gid_t *>arena.alloc(len(gids), sizeof(gid_t))
        for i, g in enumerate(gids):
            groups[i] = g
        p.groups = groups
        p.n_groups = len(gids)
        p.set_groups = proc.get("set_groups", True)
        caps = proc.get("caps")
        if caps is not None:
            p.has_caps = 1
            p.cap_bounding = caps["bounding"]
            p.cap_effective = caps["effective"]
            p.cap_inheritable = caps["inheritable"]
            p.cap_permitted = caps["permitted"]
            p.cap_ambient = caps["ambient"]
        p.last_cap = proc.get("last_cap", 40)
        p.no_new_privs = proc.get("no_new_privs", False)
        p.apparmor_profile = arena.s(proc.get("apparmor"))
        p.selinux_label = arena.s(proc.get("selinux"))
        p.preserve_fds = plan.get("preserve_fds", 0)
        seccomp = proc.get("seccomp")
        if seccomp is not None and seccomp["filter"]:
            p.seccomp_filter = <const unsigned char *>arena.s(seccomp["filter"])
            p.seccomp_len = len(seccomp["filter"])
            p.seccomp_flags = seccomp.get("flags", 0)
    p.seccomp_listener_fd = _own_high(owned, plan.get("seccomp_listener_fd", -1), floor)

    p.trace = plan.get("trace", False)
    p.cgroup_fd = _own_high(owned, plan.get("cgroup_fd", -1), floor)
    p.cgroup_procs_fd = _own_high(owned, plan.get("cgroup_procs_fd", -1), floor)
    p.cgroup_required = plan.get("cgroup_required", False)
    p.parent_places = plan.get("parent_places", False)
    tasks = plan.get("cgroup_tasks", [])
    cdef int *tasks_fds = <int *>arena.alloc(len(tasks), sizeof(int))
    cdef unsigned char *tasks_required = <unsigned char *>arena.alloc(len(tasks), 1)
    for i, (fd, required) in enumerate(tasks):
        tasks_fds[i] = _own_high(owned, fd, floor)
        tasks_required[i] = 1 if required else 0
    p.tasks_fds = tasks_fds
    p.tasks_required = tasks_required
    p.n_tasks = len(tasks)
    p.hooks_sync = plan.get("hooks_sync", False)
    create_hooks = plan.get("create_container_hooks", [])
    p.create_container_hooks = _hooks(arena, create_hooks)
    p.n_create_container_hooks = len(create_hooks)
    start_hooks = plan.get("start_container_hooks", [])
    p.start_container_hooks = _hooks(arena, start_hooks)
    p.n_start_container_hooks = len(start_hooks)
    if p.hooks_sync:
        p.hook_state_cap = 1 << 17
        p.hook_state = <char *>arena.alloc(p.hook_state_cap, 1)

    cdef int init_fd = ocipy_init_memfd()
    if init_fd < 0:
        raise OSError(-init_fd, "copy ocipy-init into a sealed memfd")
    p.init_fd = _high_fd(init_fd, floor)

    if socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0:
        close(p.init_fd)
        raise OSError(errno, "socketpair")
    # the kernel stamps every message with its sender's pid, translated into
    # our pid namespace: that is how we learn the init's host pid
    setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one))
    try:
        p.sync_fd = _high_fd(sv[1], floor)
        # our own end is inherited by the child too: keep it out of the range
        # of fds preserved for the container
        sv[0] = _high_fd(sv[0], floor)
    except BaseException:
        close(sv[0])
        close(sv[1])
        close(p.init_fd)
        raise

    p.peer_fd = sv[0]
    p.parent_pid = getpid()
    cdef int pid
    with nogil:
        pid = oci_spawn(p)
    close(p.sync_fd)
    close(p.init_fd)
    # the fds handed in: the child has its copies now
    for fd in owned:
        close(fd)
    owned.clear()
    if pid < 0:
        close(sv[0])
        raise OSError(-pid, "clone")
    return pid, sv[0]


cdef extern from *:
    """
    #include <sys/socket.h>
    #include <sys/uio.h>
    #include <errno.h>
    #include <string.h>
    #include "child.h"

    /* One message from the child and the pid the kernel stamped on it
     * (SO_PASSCRED), translated into our pid namespace.  0: EOF. */
    static int ocipy_recv_msg(int fd, struct oci_msg *msg, int *pid)
    {
        union {
            char buf[CMSG_SPACE(sizeof(struct ucred))];
            struct cmsghdr align;
        } control;
        struct iovec iov = { msg, sizeof *msg };
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        memset(msg, 0, sizeof *msg);
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        ssize_t n;
        do {
            n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
        *pid = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cred;
                memcpy(&cred, CMSG_DATA(c), sizeof cred);
                *pid = cred.pid;
            }
        msg->detail[sizeof msg->detail - 1] = '\\0';
        return (int)n;
    }
    """
    int ocipy_recv_msg(int fd, oci_msg *msg, int *pid) nogil



def recv_msg(int fd):
    """Receive one message from the child.

    Returns (type, step, errno, index, detail, sender_pid), or None at EOF
    (the child exited, or execve closed its end).  A child that died with a
    message of ours unread makes the kernel answer ECONNRESET instead of
    EOF: that is the same end.
    """
    cdef oci_msg msg
    cdef int pid = 0
    cdef int n
    with nogil:
        n = ocipy_recv_msg(fd, &msg, &pid)
    if n == -ECONNRESET or n == 0:
        return None
    if n < 0:
        raise OSError(-n, "recvmsg")
    return (msg.type, msg.step, msg.err, msg.index,
            msg.detail.decode("utf-8", "replace"), pid)


def decode_msg(bytes data):
    """Decode an error record the child wrote to the exec fifo."""
    cdef oci_msg msg
    if len(data) < sizeof(oci_msg):
        return None
    memcpy(&msg, PyBytes_AS_STRING(data), sizeof(oci_msg))
    msg.detail[OCI_DETAIL_LEN - 1] = 0
    return (msg.type, msg.step, msg.err, msg.index, msg.detail.decode("utf-8", "replace"), 0)


MSG_SIZE = sizeof(oci_msg)


cdef extern from "<sys/mount.h>" nogil:
    int umount2(const char *target, int flags)
    enum:
        MNT_DETACH


def detach_mount(path):
    """umount2(path, MNT_DETACH): the topmost mount at path and all below it."""
    cdef bytes b = _fs(path)
    if umount2(b, MNT_DETACH) < 0:
        raise OSError(errno, f"umount {path}")


cdef extern from *:
    """
    #include <sys/syscall.h>
    #include <unistd.h>
    #include <fcntl.h>
    #ifndef SYS_renameat2
    #error "no SYS_renameat2 in these kernel headers"
    #endif
    #define OCIPY_RENAME_EXCHANGE 2
    static int ocipy_rename_exchange(const char *a, const char *b)
    {
        return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, OCIPY_RENAME_EXCHANGE);
    }
    """
    int ocipy_rename_exchange(const char *a, const char *b) nogil


def exchange(a, b):
    """Swap the files at paths a and b atomically (renameat2 RENAME_EXCHANGE).

    state.py replaces a file this way instead of renaming over it: on ext4
    (/run on some hosts), a rename that replaces a file first starts the
    writeback of the new file's data (auto_da_alloc), 0.1-0.2 ms a file
    for state that is deleted again with the container.  OSError EINVAL: the
    filesystem cannot; ENOENT: one of them does not exist."""
    cdef bytes ba = _fs(a)
    cdef bytes bb = _fs(b)
    if ocipy_rename_exchange(ba, bb) < 0:
        raise OSError(errno, f"exchange {a} and {b}")


def init_image_fd():
    """A new sealed, close-on-exec memfd holding ocipy-init: the copy every
    container process executes for its last stage."""
    cdef int fd = ocipy_init_memfd()
    if fd < 0:
        raise OSError(-fd, "copy ocipy-init into a sealed memfd")
    return fd
