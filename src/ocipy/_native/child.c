/*
 * The container side of ocipy, from clone() to execve().  See child.h for the
 * rules this file lives by: system calls and plain string operations on
 * memory the parent prepared; no malloc, no stdio, no Python.
 *
 * The order of the steps follows runc's init (libcontainer/standard_init_linux.go,
 * rootfs_linux.go), with the differences noted where they are.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <termios.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define KEYCTL_JOIN_SESSION_KEYRING 1

static void reset_signals(void);

/* ------------------------------------------------------------------ */
/* small async-signal-safe helpers                                     */

static size_t str_copy(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    if (cap == 0)
        return 0;
    while (src && src[n] && n + 1 < cap) {
        dst[n] = src[n];
        n++;
    }
    dst[n] = '\0';
    return n;
}

static size_t str_append(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(dst);
    if (n >= cap)
        return n;
    return n + str_copy(dst + n, cap - n, src);
}

static void fmt_uint(char *buf, size_t cap, unsigned long v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i < (int)sizeof(tmp));
    size_t n = 0;
    while (i > 0 && n + 1 < cap)
        buf[n++] = tmp[--i];
    buf[n] = '\0';
}

static void fd_path(char *buf, size_t cap, int fd)
{
    char num[24];
    str_copy(buf, cap, "/proc/self/fd/");
    fmt_uint(num, sizeof num, (unsigned long)fd);
    str_append(buf, cap, num);
}

static ssize_t write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, data, strlen(data)) < 0 ? -1 : 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* ------------------------------------------------------------------ */
/* reporting                                                           */

static void send_msg(struct oci_plan *p, int type, int step, int err, int index, const char *detail)
{
    struct oci_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = type;
    msg.step = step;
    msg.err = err;
    msg.index = index;
    str_copy(msg.detail, sizeof msg.detail, detail);
    if (p->report_is_fifo) {
        write_all(p->report_fd, &msg, sizeof msg);
    } else {
        while (send(p->report_fd, &msg, sizeof msg, MSG_NOSIGNAL) < 0 && errno == EINTR)
            ;
    }
}

__attribute__((noreturn)) static void fail(struct oci_plan *p, int step, int err, int index,
                                           const char *detail)
{
    send_msg(p, OCI_MSG_ERROR, step, err, index, detail);
    _exit(1);
}

/* --debug: how long each step took, as OCI_MSG_TRACE records (err holds
 * the microseconds).  Only while the sync socket is there: after `start`
 * released the init nobody reads them. */
static void trace_begin(struct oci_plan *p, struct timespec *t)
{
    if (p->trace)
        clock_gettime(CLOCK_MONOTONIC, t);
}

static void trace_end(struct oci_plan *p, const struct timespec *t, int step, int index,
                      const char *detail)
{
    if (!p->trace || p->report_is_fifo || p->report_fd < 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long us = (long)(now.tv_sec - t->tv_sec) * 1000000L + (now.tv_nsec - t->tv_nsec) / 1000;
    send_msg(p, OCI_MSG_TRACE, step, (int)us, index, detail ? detail : "");
}

/* wait for the parent's one-byte go-ahead */
static void wait_parent(struct oci_plan *p)
{
    char c;
    ssize_t n;
    do {
        n = read(p->sync_fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        _exit(1); /* the parent is gone: nobody to report to */
}

/* The parent died before our PR_SET_PDEATHSIG took effect?  In a new pid
 * namespace getppid() cannot tell (it is 0 whatever happened), but the
 * parent's end of the sync socket is closed then, and ours was closed just
 * before this: the socket reports the hang-up at once. */
static void check_parent(struct oci_plan *p)
{
    struct pollfd pfd = {p->sync_fd, POLLRDHUP, 0};
    int n;
    do {
        n = poll(&pfd, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0 && (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR)))
        _exit(1); /* nobody to report to */
}

/* ------------------------------------------------------------------ */
/* paths inside the rootfs: never follow a symlink out of it           */

static int openat2_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    while (*path == '/')
        path++;
    if (*path == '\0')
        path = ".";
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

/*
 * Open path (inside the root at rootfd) as O_PATH, creating what is missing:
 * directories for every component, and the last one as a file when
 * last_is_file.  Each component is created with mkdirat() relative to its
 * parent, opened by openat2(RESOLVE_IN_ROOT): a symlink anywhere on the way
 * resolves inside the rootfs, so nothing is ever created or mounted outside.
 */
static int mkpath_in_root(int rootfd, const char *path, int last_is_file, mode_t dir_mode)
{
    char buf[OCI_PATH_LEN];
    size_t len = str_copy(buf, sizeof buf, path);
    int parent = -1;
    size_t i = 0;

    if (len >= sizeof buf - 1) {
        errno = ENAMETOOLONG;
        return -1;
    }
    while (buf[i] == '/')
        i++;
    if (buf[i] == '\0')
        return openat2_in_root(rootfd, "/", O_PATH | O_DIRECTORY);

    while (buf[i]) {
        size_t start = i;
        while (buf[i] && buf[i] != '/')
            i++;
        int last = 1;
        for (size_t j = i; buf[j]; j++)
            if (buf[j] != '/') {
                last = 0;
                break;
            }
        char saved = buf[i];
        buf[i] = '\0';
        int fd = openat2_in_root(rootfd, buf, O_PATH);
        if (fd < 0 && errno == ENOENT) {
            int dirfd = parent >= 0 ? parent : rootfd;
            const char *name = buf + start;
            int rc;
            if (last && last_is_file) {
                rc = openat(dirfd, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (rc >= 0)
                    close(rc);
            } else {
                rc = mkdirat(dirfd, name, dir_mode);
            }
            if (rc < 0 && errno != EEXIST) {
                int e = errno;
                if (parent >= 0)
                    close(parent);
                errno = e;
                return -1;
            }
            fd = openat2_in_root(rootfd, buf, O_PATH);
        }
        if (fd < 0) {
            int e = errno;
            if (parent >= 0)
                close(parent);
            errno = e;
            return -1;
        }
        if (parent >= 0)
            close(parent);
        parent = fd;
        buf[i] = saved;
        while (buf[i] == '/')
            i++;
    }
    return parent;
}

/* One sendmsg: payload as data, exactly one fd as SCM_RIGHTS (what runc
 * sends to a console socket, and the runtime-spec to a seccomp agent). */
static int send_fd(int sock, const char *payload, size_t len, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {(void *)payload, len};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do {
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* mounts                                                              */

static int mount_on_fd(const char *src, int fd, const char *type, unsigned long flags,
                       const char *data)
{
    char target[64];
    fd_path(target, sizeof target, fd);
    return mount(src, target, type, flags, data);
}

/* The mount flags a remount must keep because the kernel locks them (inside a
 * user namespace) or because the source already has them: runc does the same
 * (getLockedFlags / mountPropagate). */
static unsigned long locked_flags(int fd)
{
    struct statfs st;
    unsigned long f = 0;
    if (fstatfs(fd, &st) < 0)
        return 0;
    if (st.f_flags & ST_NOSUID)
        f |= MS_NOSUID;
    if (st.f_flags & ST_NODEV)
        f |= MS_NODEV;
    if (st.f_flags & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (st.f_flags & ST_RDONLY)
        f |= MS_RDONLY;
    return f;
}

static void do_mount(struct oci_plan *p, int rootfd, struct oci_mount *m)
{
    int fd;

    if (m->no_symlink) {
        /* class of CVE-2019-19921: /proc or /sys must not be a symlink in the rootfs */
        fd = openat2_in_root(rootfd, m->dest, O_PATH | O_NOFOLLOW);
        if (fd >= 0) {
            struct stat st;
            int is_link = fstat(fd, &st) == 0 && S_ISLNK(st.st_mode);
            close(fd);
            if (is_link)
                fail(p, OCI_STEP_MOUNT, 0, m->index,
                     "the destination is a symlink in the rootfs: refusing to mount there");
        }
    }

    fd = mkpath_in_root(rootfd, m->dest, m->dest_is_file, 0755);
    if (fd < 0)
        fail(p, OCI_STEP_MKDIR, errno, m->index, m->dest);

    if (m->source_fd >= 0) {
        /* a bind source the parent cloned on the host side with
         * open_tree(OPEN_TREE_CLONE), as runc 1.2 does: a container root in
         * a user namespace may be unable to walk to the source path, and
         * the path cannot change under us */
        if (syscall(SYS_move_mount, m->source_fd, "", fd, "",
                    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            fail(p, OCI_STEP_MOUNT, errno, m->index, m->dest);
    } else if (mount_on_fd(m->source, fd, m->fstype, m->flags, m->data) < 0) {
        fail(p, OCI_STEP_MOUNT, errno, m->index, m->dest);
    }
    close(fd);
    if (m->source_fd >= 0) {
        close(m->source_fd);
        m->source_fd = -1;
    }

    if (m->remount_flags || m->n_propagation) {
        /* re-resolve: the fd still names the directory under the new mount */
        fd = openat2_in_root(rootfd, m->dest, O_PATH);
        if (fd < 0)
            fail(p, OCI_STEP_MOUNT, errno, m->index, m->dest);
        if (m->remount_flags) {
            unsigned long flags = m->remount_flags | (locked_flags(fd) & ~MS_RDONLY);
            if (mount_on_fd(NULL, fd, NULL, flags, NULL) < 0)
                fail(p, OCI_STEP_MOUNT, errno, m->index, m->dest);
        }
        for (int i = 0; i < m->n_propagation; i++)
            if (mount_on_fd(NULL, fd, NULL, m->propagation[i], NULL) < 0)
                fail(p, OCI_STEP_PROPAGATION, errno, m->index, m->dest);
        close(fd);
    }
}

/* Is the mount at path a bind mount from the host?  We only build /dev when
 * it is not (runc: needsSetupDev). The planner decides; see make_devices. */

static void make_device(struct oci_plan *p, int rootfd, struct oci_device *d)
{
    const char *slash = strrchr(d->path, '/');
    char parent_path[OCI_PATH_LEN];
    size_t plen = slash ? (size_t)(slash - d->path) : 0;
    if (plen >= sizeof parent_path)
        fail(p, OCI_STEP_DEVICE, ENAMETOOLONG, d->index, d->path);
    memcpy(parent_path, d->path, plen);
    parent_path[plen] = '\0';
    const char *name = slash ? slash + 1 : d->path;

    int dirfd = mkpath_in_root(rootfd, plen ? parent_path : "/", 0, 0755);
    if (dirfd < 0)
        fail(p, OCI_STEP_DEVICE, errno, d->index, d->path);
    /* O_PATH fds cannot be used for fchownat(AT_EMPTY_PATH) of a child:
     * reopen the directory for real */
    char dpath[64];
    fd_path(dpath, sizeof dpath, dirfd);
    int realdir = open(dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dirfd);
    if (realdir < 0)
        fail(p, OCI_STEP_DEVICE, errno, d->index, d->path);

    unlinkat(realdir, name, 0);
    if (p->bind_devices) {
        /* inside a user namespace mknod is not allowed: bind the host's node */
        int f = openat(realdir, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0000);
        if (f < 0)
            fail(p, OCI_STEP_DEVICE, errno, d->index, d->path);
        if (mount_on_fd(d->path, f, NULL, MS_BIND, NULL) < 0)
            fail(p, OCI_STEP_DEVICE, errno, d->index, d->path);
        close(f);
    } else {
        if (mknodat(realdir, name, d->mode, makedev(d->major, d->minor)) < 0)
            fail(p, OCI_STEP_DEVICE, errno, d->index, d->path);
        if (fchownat(realdir, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
            fail(p, OCI_STEP_DEVICE, errno, d->index, d->path);
    }
    close(realdir);
}

static void make_dev_links(struct oci_plan *p, int rootfd)
{
    static const char *const links[][2] = {
        {"/proc/self/fd", "fd"},
        {"/proc/self/fd/0", "stdin"},
        {"/proc/self/fd/1", "stdout"},
        {"/proc/self/fd/2", "stderr"},
        {"pts/ptmx", "ptmx"},
    };
    int dev = openat2_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
    if (dev < 0)
        fail(p, OCI_STEP_DEVICE, errno, -1, "/dev");
    char dpath[64];
    fd_path(dpath, sizeof dpath, dev);
    int realdev = open(dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dev);
    if (realdev < 0)
        fail(p, OCI_STEP_DEVICE, errno, -1, "/dev");
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (i == 4) /* /dev/ptmx: replace whatever is there (runc: setupPtmx) */
            unlinkat(realdev, links[i][1], 0);
        if (symlinkat(links[i][0], realdev, links[i][1]) < 0 && errno != EEXIST)
            fail(p, OCI_STEP_DEVICE, errno, -1, links[i][1]);
    }
    close(realdev);
}

/* ------------------------------------------------------------------ */
/* hooks that run in the container's namespaces                        */

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* fork, exec the hook with the state on its stdin, wait (runtime-spec
 * config.md "POSIX-platform Hooks": a non-zero exit or a timeout fails) */
static void run_hook(struct oci_plan *p, struct oci_hook *h, int step, int index,
                     const char *state)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        fail(p, step, errno, index, "pipe");
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0)
        fail(p, step, errno, index, "fork");
    if (pid == 0) {
        if (dup2(fds[0], 0) < 0)
            _exit(127);
        reset_signals();
        execve(h->path, h->argv, h->envp);
        _exit(127);
    }
    close(fds[0]);
    /* a hook that does not read its stdin must not kill us with SIGPIPE */
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);
    write_all(fds[1], state, strlen(state));
    sigaction(SIGPIPE, &old, NULL);
    close(fds[1]);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = 0;
    while (1) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            fail(p, step, errno, index, "wait");
        if (h->timeout > 0 && elapsed_ms(&start) > (long)h->timeout * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail(p, step, ETIMEDOUT, index, h->path);
        }
        struct timespec nap = {0, 2 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char detail[OCI_DETAIL_LEN], num[24];
        str_copy(detail, sizeof detail, h->path);
        if (WIFEXITED(status)) {
            str_append(detail, sizeof detail, ": exit status ");
            fmt_uint(num, sizeof num, (unsigned long)WEXITSTATUS(status));
        } else {
            str_append(detail, sizeof detail, ": killed by signal ");
            fmt_uint(num, sizeof num, (unsigned long)WTERMSIG(status));
        }
        str_append(detail, sizeof detail, num);
        fail(p, step, 0, index, detail);
    }
}

/* mounts are done, pivot_root is next: the parent runs prestart and
 * createRuntime hooks in the runtime's namespaces, then sends the state */
static void hooks_sync(struct oci_plan *p)
{
    send_msg(p, OCI_MSG_HOOKS, 0, 0, -1, "");
    ssize_t n;
    do {
        n = recv(p->sync_fd, p->hook_state, p->hook_state_cap - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        _exit(1); /* the parent is gone, or a hook failed and it will kill us */
    p->hook_state[n] = '\0';
    for (int i = 0; i < p->n_create_container_hooks; i++) {
        struct timespec t;
        trace_begin(p, &t);
        run_hook(p, &p->create_container_hooks[i], OCI_STEP_HOOK_CREATE_CONTAINER, i,
                 p->hook_state);
        trace_end(p, &t, OCI_STEP_HOOK_CREATE_CONTAINER, i, p->create_container_hooks[i].path);
    }
}

static const char *start_state(struct oci_plan *p)
{
    return p->hook_state + strlen(p->hook_state) + 1;
}

static const char *notify_payload(struct oci_plan *p)
{
    const char *start = start_state(p);
    return start + strlen(start) + 1;
}

/* runtime-spec config-linux.md "Seccomp" listenerPath: one message, the
 * container process state as payload and the listener fd as SCM_RIGHTS */
static void send_seccomp_listener(struct oci_plan *p, int listener)
{
    const char *payload = notify_payload(p);
    if (send_fd(p->seccomp_listener_fd, payload, strlen(payload), listener) < 0)
        fail(p, OCI_STEP_SECCOMP, errno, -1, "send the listener to linux.seccomp.listenerPath");
    close(listener);
    close(p->seccomp_listener_fd);
    p->seccomp_listener_fd = -1;
}

/* ------------------------------------------------------------------ */
/* the root filesystem                                                 */

static void pivot_into(struct oci_plan *p)
{
    if (p->host_mount_ns) {
        /* we share the runtime's mount namespace: pivot_root or MS_MOVE
         * would change the host's root; chroot is all there is (runc too) */
        if (chdir(p->rootfs) < 0)
            fail(p, OCI_STEP_PIVOT, errno, -1, p->rootfs);
        if (chroot(".") < 0)
            fail(p, OCI_STEP_PIVOT, errno, -1, "chroot");
        if (chdir("/") < 0)
            fail(p, OCI_STEP_PIVOT, errno, -1, "/");
        return;
    }
    if (p->no_pivot) {
        /* runc --no-pivot: move the rootfs over / and chroot into it */
        if (chdir(p->rootfs) < 0)
            fail(p, OCI_STEP_PIVOT, errno, -1, p->rootfs);
        if (mount(p->rootfs, "/", NULL, MS_MOVE, NULL) < 0)
            fail(p, OCI_STEP_PIVOT, errno, -1, "move the rootfs to /");
        if (chroot(".") < 0)
            fail(p, OCI_STEP_PIVOT, errno, -1, "chroot");
        if (chdir("/") < 0)
            fail(p, OCI_STEP_PIVOT, errno, -1, "/");
        return;
    }
    /* runc's pivot_root(".", ".") trick: no directory for the old root is
     * needed inside the rootfs; the old root is stacked under the new one
     * and detached from there. */
    int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, "/");
    int newroot = open(p->rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (newroot < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, p->rootfs);
    if (fchdir(newroot) < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, p->rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, "pivot_root");
    if (fchdir(oldroot) < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, "old root");
    /* keep the unmount of the old root from propagating to the host */
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, "make the old root a slave");
    if (umount2(".", MNT_DETACH) < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, "detach the old root");
    if (chdir("/") < 0)
        fail(p, OCI_STEP_PIVOT, errno, -1, "/");
    close(oldroot);
    close(newroot);
}

static void mask_paths(struct oci_plan *p, int rootfd)
{
    /* bind /dev/null through a verified fd, so a rootfs (or a racing
     * container process) that makes /dev/null a symlink or a regular file
     * cannot redirect the mask (class of CVE-2025-31133) */
    int null_fd = -1;
    for (int i = 0; i < p->n_masked; i++) {
        const char *path = p->masked[i];
        struct stat st;
        int target = openat2_in_root(rootfd, path, O_PATH);
        if (target < 0) {
            if (errno == ENOENT)
                continue;
            fail(p, OCI_STEP_MASK, errno, i, path);
        }
        if (fstat(target, &st) < 0)
            fail(p, OCI_STEP_MASK, errno, i, path);
        if (S_ISDIR(st.st_mode)) {
            if (mount_on_fd("tmpfs", target, "tmpfs", MS_RDONLY, NULL) < 0)
                fail(p, OCI_STEP_MASK, errno, i, path);
        } else {
            if (null_fd < 0) {
                struct stat ns;
                null_fd = openat2_in_root(rootfd, "/dev/null", O_PATH | O_NOFOLLOW);
                if (null_fd < 0 || fstat(null_fd, &ns) < 0 || !S_ISCHR(ns.st_mode) ||
                    major(ns.st_rdev) != 1 || minor(ns.st_rdev) != 3)
                    fail(p, OCI_STEP_MASK, null_fd < 0 ? errno : 0, i,
                         "/dev/null is not the null device: refusing to mask with it");
            }
            char src[64];
            fd_path(src, sizeof src, null_fd);
            if (mount_on_fd(src, target, NULL, MS_BIND, NULL) < 0)
                fail(p, OCI_STEP_MASK, errno, i, path);
        }
        close(target);
    }
    if (null_fd >= 0)
        close(null_fd);
}

static void readonly_paths(struct oci_plan *p, int rootfd)
{
    for (int i = 0; i < p->n_readonly; i++) {
        const char *path = p->readonly_paths[i];
        int fd = openat2_in_root(rootfd, path, O_PATH);
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            fail(p, OCI_STEP_READONLY, errno, i, path);
        }
        char src[64];
        fd_path(src, sizeof src, fd);
        if (mount(src, src, NULL, MS_BIND | MS_REC, NULL) < 0)
            fail(p, OCI_STEP_READONLY, errno, i, path);
        close(fd);
        fd = openat2_in_root(rootfd, path, O_PATH);
        if (fd < 0)
            fail(p, OCI_STEP_READONLY, errno, i, path);
        unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(fd);
        if (mount_on_fd(NULL, fd, NULL, flags, NULL) < 0)
            fail(p, OCI_STEP_READONLY, errno, i, path);
        close(fd);
    }
}

static void setup_rootfs(struct oci_plan *p)
{
    /* Stop mount events from reaching the host (and the host's from the
     * container: slave). runc applies the requested rootfsPropagation here
     * already; with "unbindable" that makes the bind below fail and with
     * "shared" it leaks mounts to the host, so the requested propagation is
     * applied to the container's root after pivot_root instead. */
    if (!p->host_mount_ns && mount(NULL, "/", NULL, p->initial_propagation, NULL) < 0)
        fail(p, OCI_STEP_PROPAGATION, errno, -1, "/");
    if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail(p, OCI_STEP_ROOTFS, errno, -1, p->rootfs);

    int rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        fail(p, OCI_STEP_ROOTFS, errno, -1, p->rootfs);

    struct timespec t;
    for (int i = 0; i < p->n_mounts; i++) {
        trace_begin(p, &t);
        do_mount(p, rootfd, &p->mounts[i]);
        trace_end(p, &t, OCI_STEP_MOUNT, p->mounts[i].index, p->mounts[i].dest);
    }

    if (p->make_devices) {
        trace_begin(p, &t);
        for (int i = 0; i < p->n_devices; i++)
            make_device(p, rootfd, &p->devices[i]);
        make_dev_links(p, rootfd);
        trace_end(p, &t, OCI_STEP_DEVICE, -1, "/dev");
    }

    /* runc creates a missing cwd (rootfs_linux.go: createCwd) */
    if (p->has_process && p->cwd) {
        int fd = mkpath_in_root(rootfd, p->cwd, 0, 0755);
        if (fd < 0)
            fail(p, OCI_STEP_CWD, errno, -1, p->cwd);
        close(fd);
    }
    close(rootfd);

    if (p->hooks_sync)
        hooks_sync(p);
    trace_begin(p, &t);
    pivot_into(p);
    trace_end(p, &t, OCI_STEP_PIVOT, -1, p->no_pivot ? "chroot" : "pivot_root");

    if (p->rootfs_propagation && mount(NULL, "/", NULL, p->rootfs_propagation, NULL) < 0)
        fail(p, OCI_STEP_PROPAGATION, errno, -1, "/");
}

/* After the hostname and the sysctls (runc's order: they write /proc/sys,
 * which readonlyPaths usually makes read-only): read-only paths, masked
 * paths, then a read-only root. */
static void finalize_rootfs(struct oci_plan *p)
{
    int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        fail(p, OCI_STEP_ROOTFS, errno, -1, "/");
    struct timespec t;
    trace_begin(p, &t);
    readonly_paths(p, rootfd);
    trace_end(p, &t, OCI_STEP_READONLY, -1, "linux.readonlyPaths");
    trace_begin(p, &t);
    mask_paths(p, rootfd);
    trace_end(p, &t, OCI_STEP_MASK, -1, "linux.maskedPaths");
    close(rootfd);

    if (p->root_readonly) {
        /* keep the flags the root already has (nosuid, nodev...) */
        int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | (fd >= 0 ? locked_flags(fd) : 0);
        if (fd >= 0)
            close(fd);
        if (mount(NULL, "/", NULL, flags, NULL) < 0)
            fail(p, OCI_STEP_ROOTFS, errno, -1, "remount / read-only");
    }
}

/* ------------------------------------------------------------------ */
/* the console: runc's setupConsole/mountConsole                       */

static void bind_console(struct oci_plan *p, int slave)
{
    int dev = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dev < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "/dev");
    unlinkat(dev, "console", 0);
    int target = openat(dev, "console", O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0000);
    close(dev);
    if (target < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "create /dev/console");
    char src[64];
    fd_path(src, sizeof src, slave);
    if (mount_on_fd(src, target, NULL, MS_BIND, NULL) < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "bind the pty on /dev/console");
    close(target);
}

static void setup_console(struct oci_plan *p)
{
    /* the pty comes from the container's own devpts (/dev/ptmx -> pts/ptmx) */
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "open /dev/ptmx");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "unlock the pty");
    /* TIOCGPTPEER opens the slave through the master: no path lookup that a
     * container could race (class of CVE-2025-52565) */
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "open the pty slave");
    if (p->console_rows || p->console_cols) {
        struct winsize ws;
        memset(&ws, 0, sizeof ws);
        ws.ws_row = p->console_rows;
        ws.ws_col = p->console_cols;
        if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
            fail(p, OCI_STEP_CONSOLE, errno, -1, "set the console size");
    }

    /* /dev/console: an empty file bind-mounted from the slave we hold; only
     * for the init (runc exec leaves the container's console alone) */
    if (p->setup_rootfs)
        bind_console(p, slave);

    /* one message: the name as payload, exactly one fd as SCM_RIGHTS */
    static const char name[] = "/dev/ptmx";
    if (send_fd(p->console_fd, name, sizeof name - 1, master) < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "send the pty master to the console socket");
    close(master);
    close(p->console_fd);
    p->console_fd = -1;

    if (setsid() < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "setsid");
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        fail(p, OCI_STEP_CONSOLE, errno, -1, "make the pty the controlling terminal");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0)
            fail(p, OCI_STEP_CONSOLE, errno, -1, "dup the pty to stdio");
    if (slave > 2)
        close(slave);
}

/* ------------------------------------------------------------------ */
/* process attributes                                                  */

static int is_executable(const char *path, int *err)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        *err = errno;
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        *err = EISDIR;
        return 0;
    }
    if (!(st.st_mode & 0111)) {
        *err = EACCES;
        return 0;
    }
    return 1;
}

/* Go's exec.LookPath, which runc runs before it waits for `start`, so a
 * missing executable fails `create` (docker and podman match the wording). */
static void lookup_executable(struct oci_plan *p)
{
    const char *name = p->argv[0];
    char detail[OCI_DETAIL_LEN];
    int err = 0;

    if (strchr(name, '/')) {
        if (is_executable(name, &err)) {
            str_copy(p->exec_path, sizeof p->exec_path, name);
            return;
        }
        str_copy(detail, sizeof detail, name);
        fail(p, OCI_STEP_LOOKUP, err, -1, detail);
    }
    const char *path = p->path_env ? p->path_env : "";
    while (1) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        char candidate[OCI_PATH_LEN];
        if (len == 0) {
            str_copy(candidate, sizeof candidate, ".");
        } else {
            if (len >= sizeof candidate)
                len = sizeof candidate - 1;
            memcpy(candidate, path, len);
            candidate[len] = '\0';
        }
        str_append(candidate, sizeof candidate, "/");
        str_append(candidate, sizeof candidate, name);
        if (p->path_env && is_executable(candidate, &err)) {
            str_copy(p->exec_path, sizeof p->exec_path, candidate);
            return;
        }
        if (!end)
            break;
        path = end + 1;
    }
    fail(p, OCI_STEP_LOOKUP, 0, -1, name);
}

static void set_hostname(struct oci_plan *p)
{
    if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
        fail(p, OCI_STEP_HOSTNAME, errno, -1, p->hostname);
    if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0)
        fail(p, OCI_STEP_DOMAINNAME, errno, -1, p->domainname);
}

static void set_sysctls(struct oci_plan *p)
{
    for (int i = 0; i < p->n_sysctl; i++)
        if (write_file(p->sysctl_paths[i], p->sysctl_values[i]) < 0)
            fail(p, OCI_STEP_SYSCTL, errno, i, p->sysctl_paths[i]);
}

static void capset_masks(struct oci_plan *p, uint64_t effective, uint64_t permitted)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];

    memset(data, 0, sizeof data);
    data[0].effective = (uint32_t)effective;
    data[1].effective = (uint32_t)(effective >> 32);
    data[0].permitted = (uint32_t)permitted;
    data[1].permitted = (uint32_t)(permitted >> 32);
    data[0].inheritable = (uint32_t)p->cap_inheritable;
    data[1].inheritable = (uint32_t)(p->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        fail(p, OCI_STEP_CAPS, errno, -1, "capset");
}

static void set_capabilities(struct oci_plan *p)
{
    char num[24];

    capset_masks(p, p->cap_effective, p->cap_permitted);

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(p, OCI_STEP_CAPS, errno, -1, "clear the ambient set");
    for (int cap = 0; cap <= p->last_cap && cap < 64; cap++) {
        if (!(p->cap_ambient & (1ULL << cap)))
            continue;
        /* the kernel refuses (EPERM) an ambient cap that is not both
         * permitted and inheritable; runc's default spec asks for exactly
         * that and runc carries on, so do we */
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0 && errno != EPERM) {
            fmt_uint(num, sizeof num, (unsigned long)cap);
            fail(p, OCI_STEP_CAPS, errno, -1, num);
        }
    }
}

static void drop_bounding_set(struct oci_plan *p)
{
    for (int cap = 0; cap <= p->last_cap && cap < 64; cap++) {
        if (p->cap_bounding & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            char num[24];
            fmt_uint(num, sizeof num, (unsigned long)cap);
            fail(p, OCI_STEP_CAPS, errno, -1, num);
        }
    }
}

static void set_user(struct oci_plan *p)
{
    if (p->set_groups && setgroups((size_t)p->n_groups, p->groups) < 0)
        fail(p, OCI_STEP_USER, errno, -1, "setgroups");
    if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
        fail(p, OCI_STEP_USER, errno, -1, "setgid");
    if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
        fail(p, OCI_STEP_USER, errno, -1, "setuid");
}

static void write_lsm_attr(struct oci_plan *p, const char *path, const char *alt, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && alt)
        fd = open(alt, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        fail(p, OCI_STEP_LSM, errno, -1, path);
    if (write_all(fd, value, strlen(value)) < 0)
        fail(p, OCI_STEP_LSM, errno, -1, value);
    close(fd);
}

/* The kernel's struct sigaction for rt_sigaction(2). */
struct kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

static void reset_signals(void)
{
    /* the raw system call: glibc's sigaction() refuses its two reserved
     * real-time signals (32, 33), and a caller may have ignored them */
    struct kernel_sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.handler = SIG_DFL;
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &sa, NULL, sizeof(unsigned long));
    unsigned long none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
}

/* Mark every fd from `from` up close-on-exec: at execve the process keeps
 * only stdio and the preserved fds.  The fifo and sync fds stay usable for
 * reporting an execve failure until then. */
static void cloexec_from(struct oci_plan *p, int from)
{
    for (int fd = 0; fd < from; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && (fl & FD_CLOEXEC))
            fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    if (syscall(SYS_close_range, (unsigned)from, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    /* pre-5.11 kernels: walk the table */
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = from; fd < max; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    (void)p;
}

/* Class of CVE-2024-21626: a cwd such as /proc/self/fd/N could resolve to
 * a directory outside the container through an fd still open at this point;
 * the kernel then reports the cwd as "(unreachable)..." or fails getcwd.
 * runc checks the same after its chdir. */
static void check_cwd_inside_root(struct oci_plan *p)
{
    char buf[OCI_PATH_LEN];
    long n = syscall(SYS_getcwd, buf, sizeof buf);
    if (n < 0)
        fail(p, OCI_STEP_CWD, errno, -1, p->cwd);
    if (buf[0] != '/') {
        char detail[OCI_DETAIL_LEN];
        str_copy(detail, sizeof detail, "the working directory \"");
        str_append(detail, sizeof detail, p->cwd);
        str_append(detail, sizeof detail, "\" (process.cwd) is outside the container's root");
        fail(p, OCI_STEP_SETUP, 0, -1, detail);
    }
}

static void finish_and_exec(struct oci_plan *p)
{
    for (int i = 0; i < p->n_rlimits; i++)
        if (prlimit(0, p->rlimit_resource[i], &p->rlimits[i], NULL) < 0)
            fail(p, OCI_STEP_RLIMIT, errno, i, "");

    if (p->has_oom_score_adj) {
        char num[24];
        int v = p->oom_score_adj;
        if (v < 0) {
            num[0] = '-';
            fmt_uint(num + 1, sizeof num - 1, (unsigned long)(-(long)v));
        } else {
            fmt_uint(num, sizeof num, (unsigned long)v);
        }
        if (write_file("/proc/self/oom_score_adj", num) < 0)
            fail(p, OCI_STEP_OOM, errno, -1, num);
    }

    int chdir_failed = p->cwd && chdir(p->cwd) < 0;
    if (!chdir_failed && p->cwd)
        check_cwd_inside_root(p);

    if (p->has_caps) {
        drop_bounding_set(p);
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            fail(p, OCI_STEP_CAPS, errno, -1, "keep capabilities");
    }
    set_user(p);
    /* runc: retry the chdir as the user, for a cwd only they may enter */
    if (chdir_failed) {
        if (chdir(p->cwd) < 0)
            fail(p, OCI_STEP_CWD, errno, -1, p->cwd);
        check_cwd_inside_root(p);
    }
    if (p->has_caps && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        fail(p, OCI_STEP_CAPS, errno, -1, "clear keep capabilities");
    umask(p->umask);

    if (p->apparmor_profile) {
        char value[OCI_DETAIL_LEN];
        str_copy(value, sizeof value, "exec ");
        str_append(value, sizeof value, p->apparmor_profile);
        write_lsm_attr(p, "/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec",
                       value);
    }
    if (p->selinux_label)
        write_lsm_attr(p, "/proc/thread-self/attr/exec", NULL, p->selinux_label);

    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(p, OCI_STEP_NNP, errno, -1, "");

    cloexec_from(p, 3 + p->preserve_fds);
    reset_signals();

    /* The seccomp filter is the last step before execve, so the user's
     * profile can never block the runtime's own setup (runc loads it
     * earlier when no_new_privs is off and trips over profiles that block
     * getcwd).  Without no_new_privs, loading needs CAP_SYS_ADMIN: keep it
     * for that one call if the final sets lack it; then only capset,
     * prctl(PR_CAP_AMBIENT) and execve remain. */
    /* Nothing but execve may follow the filter (a profile may block capset
     * or prctl), so CAP_SYS_ADMIN is kept in the final sets for the load:
     * harmless, since after execve a process's capabilities derive from its
     * bounding, inheritable and ambient sets only, never from the permitted
     * and effective sets it had before. */
    const uint64_t sys_admin = 1ULL << 21;
    int need_admin = p->seccomp_len && !p->no_new_privs && !(p->cap_effective & sys_admin);
    if (p->has_caps) {
        uint64_t effective = p->cap_effective, permitted = p->cap_permitted;
        if (need_admin) {
            p->cap_effective |= sys_admin;
            p->cap_permitted |= sys_admin;
        }
        set_capabilities(p);
        p->cap_effective = effective;
        p->cap_permitted = permitted;
    }
    if (p->seccomp_len) {
        /* (no trace record after this: the filter may forbid sending it) */
        struct sock_fprog prog;
        prog.len = (unsigned short)(p->seccomp_len / sizeof(struct sock_filter));
        prog.filter = (struct sock_filter *)p->seccomp_filter;
        int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, p->seccomp_flags,
                                    &prog);
        if (listener < 0)
            fail(p, OCI_STEP_SECCOMP, errno, -1, "");
        /* the notifications of this process go to the agent listening there
         * (sendmsg/write can't be notified: plan_seccomp refuses that) */
        if ((p->seccomp_flags & SECCOMP_FILTER_FLAG_NEW_LISTENER) && p->seccomp_listener_fd >= 0)
            send_seccomp_listener(p, listener);
    }
    execve(p->exec_path, p->argv, p->envp);
    fail(p, OCI_STEP_EXEC, errno, -1, p->exec_path);
}

/* ------------------------------------------------------------------ */
/* namespaces                                                          */

static void enter_namespaces(struct oci_plan *p)
{
    /* the user namespace first: the others may be owned by it (runc's nsexec
     * orders the joins the same way) */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < p->n_joins; i++) {
            int is_user = p->joins[i].nstype == CLONE_NEWUSER;
            if (is_user != (pass == 0))
                continue;
            if (setns(p->joins[i].fd, p->joins[i].nstype) < 0)
                fail(p, OCI_STEP_SETNS, errno, p->joins[i].index, "");
            close(p->joins[i].fd);
        }

    if (p->unshare_flags & CLONE_NEWUSER) {
        if (unshare(CLONE_NEWUSER) < 0)
            fail(p, OCI_STEP_UNSHARE, errno, -1, "user");
    }
    if (p->new_userns) {
        send_msg(p, OCI_MSG_USERNS, 0, 0, -1, "");
        wait_parent(p);
        /* become root of the new namespace: files we create get mapped ids */
        if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
            fail(p, OCI_STEP_USERNS, errno, -1, "switch to root in the user namespace");
    }
    int rest = p->unshare_flags & ~CLONE_NEWUSER;
    if (rest && unshare(rest) < 0)
        fail(p, OCI_STEP_UNSHARE, errno, -1, "");
    if ((rest & CLONE_NEWTIME) && p->timens_offsets &&
        write_file("/proc/self/timens_offsets", p->timens_offsets) < 0)
        fail(p, OCI_STEP_TIMENS, errno, -1, p->timens_offsets);
    /* we are in our cgroups by now (join_cgroups, or the parent for the
     * systemd driver): the cgroup namespace's root is that cgroup */
    if (p->new_cgroupns && unshare(CLONE_NEWCGROUP) < 0)
        fail(p, OCI_STEP_UNSHARE, errno, -1, "cgroup");

    if (p->fork_after_ns) {
        /* CLONE_PARENT: the init becomes our parent's child, so `run` can
         * wait for it and `create` leaves it to the caller's subreaper */
        pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PARENT, NULL, NULL, NULL, NULL);
        if (pid < 0)
            fail(p, OCI_STEP_FORK, errno, -1, "");
        if (pid > 0)
            _exit(0);
    }
}

/* ------------------------------------------------------------------ */
/* handing over to ocipy-init                                          */

/* A buffered writer for the stage-2 image: system calls only. */
struct blob_writer {
    int fd;
    int failed;
    size_t used;
    char buf[8192];
};

static void blob_flush(struct blob_writer *w)
{
    if (w->used && write_all(w->fd, w->buf, w->used) < 0)
        w->failed = 1;
    w->used = 0;
}

static void blob_put(struct blob_writer *w, const void *data, size_t len)
{
    const char *c = data;
    while (len) {
        if (w->used == sizeof w->buf)
            blob_flush(w);
        size_t n = sizeof w->buf - w->used;
        if (n > len)
            n = len;
        memcpy(w->buf + w->used, c, n);
        w->used += n;
        c += n;
        len -= n;
    }
}

static void blob_u32(struct blob_writer *w, uint32_t v)
{
    blob_put(w, &v, sizeof v);
}

/* a string: its length (OCI_BLOB_NULL for NULL), its bytes and a NUL */
static void blob_str(struct blob_writer *w, const char *s)
{
    if (!s) {
        blob_u32(w, OCI_BLOB_NULL);
        return;
    }
    size_t len = strlen(s);
    blob_u32(w, (uint32_t)len);
    blob_put(w, s, len + 1);
}

/* a NULL-terminated string vector: the count, then each string */
static void blob_strv(struct blob_writer *w, char *const *v)
{
    uint32_t n = 0;
    while (v && v[n])
        n++;
    blob_u32(w, n);
    for (uint32_t i = 0; i < n; i++)
        blob_str(w, v[i]);
}

/* The part of the plan that stage 2 reads, into a new memfd (format in
 * child.h, read back by oci_stage2_unpack).  The struct goes first as it
 * is; the reader replaces every pointer in it. */
static int pack_stage2(struct oci_plan *p)
{
    int fd = (int)syscall(SYS_memfd_create, "ocipy-stage2", 0);
    if (fd < 0)
        return -1;
    struct blob_writer w;
    w.fd = fd;
    w.failed = 0;
    w.used = 0;
    uint32_t header[2] = {OCI_BLOB_MAGIC, (uint32_t)sizeof *p};
    blob_put(&w, header, sizeof header);
    blob_put(&w, p, sizeof *p);
    blob_strv(&w, p->argv);
    blob_strv(&w, p->envp);
    blob_str(&w, p->cwd);
    blob_str(&w, p->apparmor_profile);
    blob_str(&w, p->selinux_label);
    blob_put(&w, p->groups, (size_t)p->n_groups * sizeof(gid_t));
    blob_put(&w, p->seccomp_filter, p->seccomp_len);
    if (p->hook_state) {
        /* the createContainer state, the startContainer state and the
         * listener payload, each NUL-terminated */
        size_t len = 0;
        for (int part = 0; part < 3; part++)
            len += strlen(p->hook_state + len) + 1;
        blob_u32(&w, (uint32_t)len);
        blob_put(&w, p->hook_state, len);
    } else {
        blob_u32(&w, OCI_BLOB_NULL);
    }
    for (int i = 0; i < p->n_start_container_hooks; i++) {
        struct oci_hook *h = &p->start_container_hooks[i];
        blob_str(&w, h->path);
        blob_strv(&w, h->argv);
        blob_strv(&w, h->envp);
        blob_u32(&w, (uint32_t)h->timeout);
    }
    blob_flush(&w);
    if (w.failed || lseek(fd, 0, SEEK_SET) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int keep_across_exec(int fd)
{
    return fd < 0 ? 0 : fcntl(fd, F_SETFD, 0);
}

/* CVE-2019-5736 and its class: until now this process is a copy of the
 * runtime, the host's Python interpreter, and /proc/self/exe names that
 * binary.  A container process that executed it (a `#!/proc/self/exe`
 * script, or /proc/<init>/exe opened while the init waits for start) would
 * run the host's interpreter inside the container, or write to it.  So the
 * last stage runs in ocipy-init, a small static program the parent copied
 * into a sealed memfd: from here on /proc/self/exe is that read-only copy
 * and the interpreter is out of the container's reach.  (runc re-executes
 * itself from a memfd for the same reason.)  It also keeps the init that
 * waits for `start` small: the interpreter's pages go at this execve. */
static void exec_init(struct oci_plan *p)
{
    /* execve keeps our capabilities only for the root of our user
     * namespace: a process that joined one (ocipy exec, or a config naming
     * a user namespace's path) is still the host's uid, unmapped there, and
     * ocipy-init would start with none.  The process's own uid and gids are
     * set in stage 2 anyway. */
    if (geteuid() != 0 &&
        (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0))
        fail(p, OCI_STEP_USERNS, errno, -1,
             "become root of the user namespace (is uid 0 mapped in it?)");
    int blob = pack_stage2(p);
    if (blob < 0)
        fail(p, OCI_STEP_INIT, errno, -1, "write the plan for ocipy-init");
    /* stdio and the preserved fds must survive both execves */
    for (int fd = 0; fd < 3 + p->preserve_fds; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && (fl & FD_CLOEXEC))
            fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    if (keep_across_exec(blob) < 0 || keep_across_exec(p->sync_fd) < 0 ||
        keep_across_exec(p->fifo_fd) < 0 || keep_across_exec(p->seccomp_listener_fd) < 0)
        fail(p, OCI_STEP_INIT, errno, -1, "pass the fds to ocipy-init");
    char num[24];
    fmt_uint(num, sizeof num, (unsigned long)blob);
    char *const argv[] = {(char *)OCI_INIT_ARGV0, num, NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, p->init_fd, "", argv, envp, AT_EMPTY_PATH);
    fail(p, OCI_STEP_INIT, errno, -1, "execute ocipy-init");
}

/* Enter the container's cgroups before anything else, so all we allocate is
 * accounted.  Without the parent migrating us by pid: that takes the write
 * side of the kernel's global cgroup_threadgroup_rwsem, which waits for an
 * RCU grace period when none happened lately (8-15 ms measured here) while
 * holding cgroup_mutex, stalling every cgroup operation on the host.
 * cgroup2: clone3(CLONE_INTO_CGROUP) created us there already.  v1: "0"
 * written to a hierarchy's `tasks` moves the calling thread, our only one,
 * and kernels that skip the rwsem for a thread moving itself (this one does:
 * 5-50 us after a quiet spell) wait for no grace period; older ones wait as
 * for cgroup.procs.  Both still take cgroup_mutex, briefly.  The parent
 * opened the files; we write before changing any namespace or credential,
 * so the writer's checks (before Linux 5.16) and the opener's agree. */
static void join_cgroups(struct oci_plan *p)
{
    if (p->cgroup_procs_fd >= 0) {
        /* clone3 refused (an older kernel, a seccomp profile): the classic
         * migration, lock and all */
        if (!p->in_cgroup && write(p->cgroup_procs_fd, "0", 1) < 0 && p->cgroup_required)
            fail(p, OCI_STEP_CGROUP, errno, -1, "cgroup.procs");
        close(p->cgroup_procs_fd);
        p->cgroup_procs_fd = -1;
    }
    if (p->cgroup_fd >= 0) {
        close(p->cgroup_fd);
        p->cgroup_fd = -1;
    }
    for (int i = 0; i < p->n_tasks; i++) {
        if (write(p->tasks_fds[i], "0", 1) < 0 && p->tasks_required[i])
            fail(p, OCI_STEP_CGROUP, errno, i, "tasks");
        close(p->tasks_fds[i]);
    }
    p->n_tasks = 0;
}

static void child_main(struct oci_plan *p)
{
    p->report_fd = p->sync_fd;
    p->report_is_fifo = 0;

    /* the parent blocked every signal around clone(): whatever handlers the
     * interpreter installed must not run here */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* a parent killed before that line sent no death signal: then quit.  In
     * a new pid namespace getppid() is 0 whatever happened, so there the
     * parent's end of the socket, closed below, tells (check_parent, or an
     * EOF on wait_parent's read). */
    pid_t parent = getppid();
    if (parent != 0 && parent != p->parent_pid)
        _exit(1);
    if (p->peer_fd >= 0) {
        close(p->peer_fd);
        p->peer_fd = -1;
    }
    /* non-dumpable until execve: nothing in the container may open
     * /proc/<pid>/exe or ptrace us while we still hold host resources */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    umask(0);
    struct timespec t;
    trace_begin(p, &t);
    join_cgroups(p);
    trace_end(p, &t, OCI_STEP_CGROUP, -1, "enter the cgroups");

    if (p->parent_places)
        wait_parent(p); /* the parent's part is done (a systemd unit's placement) */
    else
        check_parent(p);
    trace_begin(p, &t);
    enter_namespaces(p);
    trace_end(p, &t, OCI_STEP_UNSHARE, -1, "namespaces");
    if (p->hooks_sync && !p->setup_rootfs)
        hooks_sync(p); /* ocipy exec: only the seccomp listener's payload */

    if (p->keyring) {
        if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, p->keyring, 0, 0, 0) < 0 &&
            errno != ENOSYS)
            fail(p, OCI_STEP_KEYRING, errno, -1, p->keyring);
    }

    if (p->setup_rootfs)
        setup_rootfs(p);
    trace_begin(p, &t);
    set_hostname(p);
    set_sysctls(p);
    trace_end(p, &t, OCI_STEP_SYSCTL, -1, "hostname and sysctls");
    if (p->setup_rootfs)
        finalize_rootfs(p);
    if (p->console_fd >= 0) {
        trace_begin(p, &t);
        setup_console(p);
        trace_end(p, &t, OCI_STEP_CONSOLE, -1, "console");
    }

    if (!p->has_process) {
        /* a config without process may be created; start reports the error */
        p->exec_path[0] = '\0';
    } else {
        if (p->cwd && chdir(p->cwd) < 0 && errno != EACCES)
            fail(p, OCI_STEP_CWD, errno, -1, p->cwd);
        lookup_executable(p);
    }

    exec_init(p);
}

/* The second stage, in the ocipy-init image (init.c): report "ready", wait
 * for `start` on the exec fifo, run startContainer hooks, then the last
 * steps and the container's execve.  See exec_init() for why it is a
 * separate image. */
void oci_stage2(struct oci_plan *p)
{
    p->report_fd = p->sync_fd;
    p->report_is_fifo = 0;
    if (p->fifo_fd >= 0) {
        char fifo[64];
        fd_path(fifo, sizeof fifo, p->fifo_fd);
        prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
        send_msg(p, OCI_MSG_READY, 0, 0, -1, "");
        close(p->sync_fd);
        p->sync_fd = -1;
        /* blocks until `start` opens the fifo for reading */
        int fd;
        do {
            fd = open(fifo, O_WRONLY | O_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            /* nobody listens on the sync socket any more: stderr is all we have */
            char line[160], num[24];
            fmt_uint(num, sizeof num, (unsigned long)errno);
            str_copy(line, sizeof line, "ocipy: open the exec fifo: errno ");
            str_append(line, sizeof line, num);
            str_append(line, sizeof line, "\n");
            write_all(2, line, strlen(line));
            _exit(1);
        }
        /* the fd must stay above the fds preserved for the container: one
         * among them would survive execve and `start` would never see EOF */
        if (fd < 3 + p->preserve_fds) {
            int high = fcntl(fd, F_DUPFD_CLOEXEC, 3 + p->preserve_fds);
            if (high < 0)
                _exit(1);
            close(fd);
            fd = high;
        }
        close(p->fifo_fd);
        p->fifo_fd = fd;
        p->report_fd = fd;
        p->report_is_fifo = 1;
        /* one byte: released; then either execve closes the fifo (start sees
         * EOF) or an error record follows */
        if (write_all(fd, "0", 1) < 0)
            _exit(1);
        if (!p->has_process)
            fail(p, OCI_STEP_SETUP, 0, -1, "config.json has no process to start");
        for (int i = 0; i < p->n_start_container_hooks; i++)
            run_hook(p, &p->start_container_hooks[i], OCI_STEP_HOOK_START_CONTAINER, i,
                     start_state(p));
    } else {
        /* ocipy exec: no waiting; the parent learns our pid from this
         * message and sees EOF on the (close-on-exec) socket at execve.
         * The death signal must go: it survives execve, and `exec -d`
         * returns while the process runs on */
        prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
        send_msg(p, OCI_MSG_READY, 0, 0, -1, "");
    }
    finish_and_exec(p);
}

/* clone3's argument (linux/sched.h, spelled out: that header's CLONE_*
 * macros clash with the C library's) */
struct oci_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};
#define OCI_CLONE_INTO_CGROUP 0x200000000ULL
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/*
 * The child shares our memory until it executes ocipy-init, like a vfork()
 * child (CLONE_VM | CLONE_VFORK: we sleep in clone3 until its execve or its
 * exit), when it needs nothing from us before then (shares_memory).  Then
 * the clone copies no page table, its execve tears none down, and we take
 * no copy-on-write fault for every page we write afterwards: ~0.5 ms of a
 * `create` with the ~14 MB a Python process has mapped by then (measured on
 * the test VM), ~0.3 ms of an `exec` (whose child forks once more, to enter
 * the pid namespace: that fork still copies our memory, once instead of
 * twice).  Go's os/exec does the same for namespaced children
 * (forkAndExecInChild1: CLONE_VFORK | CLONE_VM unless CLONE_NEWUSER).
 *
 * It runs on a stack of its own (clone3_on_stack), works on its own copy of
 * the plan (run_shared_child), and what child.c writes through the plan's
 * pointers (a mount's source_fd, after closing it) the parent no longer
 * reads.  Like any vfork() child it shares the C library's thread state
 * with us, errno included, which we do not read after clone3 succeeds, and
 * it takes no lock and allocates nothing (see child.h).  What belongs to
 * the memory rather than the process is ours too: PR_SET_DUMPABLE, which
 * spawn_shared puts back.
 *
 * The cost: every signal stays blocked here until the child's execve (see
 * oci_spawn), so a child stuck in a mount (a hung NFS or FUSE source) holds
 * a SIGINT or SIGTERM back as long; SIGKILL still ends us.  And on cgroup
 * v1 the child's move into its cpuset applies to the memory it shares: a
 * memory policy of ours would be rebound to the container's cpuset.mems
 * (we set none), and with cpuset.memory_migrate our pages would move.
 *
 * x86-64 only: the stack switch needs a few lines of assembly, and other
 * architectures take the plain clone below.
 */
#if defined(__x86_64__)
#define OCI_SHARED_CHILD 1
#define OCI_SHARED_STACK (512 * 1024) /* child.c's deepest frames take ~30 KB */

static int shares_memory(const struct oci_plan *p)
{
    /* the user namespace's id maps, the hooks and a placement by the parent
     * need us while the child works; so do --debug's trace records, which
     * would fill the socket with nobody reading (one per mount) */
    if (p->new_userns || p->hooks_sync || p->parent_places || p->trace)
        return 0;
    /* setns() into a time namespace refuses a process whose memory another
     * one uses (EUSERS: the kernel's current_is_single_threaded()) */
    for (int i = 0; i < p->n_joins; i++)
        if (p->joins[i].nstype == CLONE_NEWTIME)
            return 0;
    return 1;
}

/* clone3 for a child starting on a stack of its own: it cannot return into
 * the C code that made the call (that frame is on our stack), so it calls
 * fn(arg) and exits if fn returns.  Returns the child's pid or -errno. */
static long clone3_on_stack(struct oci_clone_args *args, void (*fn)(void *), void *arg)
{
    long ret;
    register void (*entry)(void *) __asm__("r12") = fn;
    register void *entry_arg __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        /* the child, on the new stack (16-byte aligned: the call below
         * leaves it as the ABI wants at a function's entry) */
        "xor %%ebp, %%ebp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov $60, %%eax\n\t" /* SYS_exit */
        "mov $127, %%edi\n\t"
        "syscall\n\t"
        "hlt\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "0"((long)SYS_clone3), "D"(args), "S"(sizeof *args), "r"(entry), "r"(entry_arg)
        : "rcx", "r11", "memory", "cc");
    return ret;
}

/* The shared child: the plan copied onto its own stack first, so whatever
 * the child records in it stays out of the parent's. */
static void run_shared_child(void *arg)
{
    struct oci_plan plan = *(const struct oci_plan *)arg;
    reset_signals();
    child_main(&plan);
    _exit(127);
}

/* The child's stack: only the pages it touches are ever allocated; a guard
 * page below it.  NULL when there is none to be had (the caller then takes
 * the plain clone). */
static char *shared_stack(size_t *size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    *size = OCI_SHARED_STACK + page;
    char *stack = mmap(NULL, *size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED)
        return NULL;
    if (mprotect(stack, page, PROT_NONE) < 0) {
        munmap(stack, *size);
        return NULL;
    }
    return stack;
}

/* clone3 with the child sharing our memory (see above), on the stack
 * shared_stack mapped (the guard page below it, then OCI_SHARED_STACK
 * bytes): its pid, or -errno when the kernel refuses */
static pid_t spawn_shared(struct oci_plan *p, char *stack, size_t size, int into_cgroup)
{
    struct oci_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = (uint64_t)(unsigned int)p->clone_flags | CLONE_VM | CLONE_VFORK;
    if (into_cgroup) {
        args.flags |= OCI_CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)p->cgroup_fd;
    }
    args.exit_signal = SIGCHLD;
    args.stack = (uint64_t)(uintptr_t)(stack + size - OCI_SHARED_STACK);
    args.stack_size = OCI_SHARED_STACK;
    p->in_cgroup = into_cgroup; /* the child's copy says where it is */
    /* the child turns dumpability off for what it shares: ours again after */
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    long pid = clone3_on_stack(&args, run_shared_child, p);
    /* back here: the child has executed ocipy-init or exited */
    if (dumpable >= 0)
        prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    return (pid_t)pid;
}
#endif

/* clone3 could not be used at all (no such call before Linux 5.3, a
 * seccomp profile's EPERM, a kernel without CLONE_INTO_CGROUP or its cgroup
 * field: EINVAL, E2BIG), as against the cgroup's own answer to being put
 * in it (a full pids.max: EAGAIN, which a migration would not enforce) */
static int clone3_unusable(int err)
{
    return err == ENOSYS || err == EPERM || err == EINVAL || err == E2BIG;
}

int oci_spawn(struct oci_plan *p)
{
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);

    pid_t pid = -1;
    int in_cgroup = 0;
#ifdef OCI_SHARED_CHILD
    size_t stack_size;
    char *stack = shares_memory(p) ? shared_stack(&stack_size) : NULL;
    if (stack) {
        /* the same steps as the plain clone below */
        int refused = 0;
        if (p->cgroup_fd >= 0) {
            pid = spawn_shared(p, stack, stack_size, 1);
            refused = pid < 0 && p->cgroup_required && !clone3_unusable(-pid);
        }
        if (pid < 0 && !refused)
            pid = spawn_shared(p, stack, stack_size, 0);
        munmap(stack, stack_size);
        if (pid >= 0 || !clone3_unusable(-pid)) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            return pid;
        }
        pid = -1; /* no usable clone3: the plain clone below */
    }
#endif
    if (p->cgroup_fd >= 0) {
        struct oci_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = (uint64_t)(unsigned int)p->clone_flags | OCI_CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)p->cgroup_fd;
        pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
        in_cgroup = pid >= 0;
        /* clone3 unusable, or a best-effort cgroup: the plain clone below,
         * and the child writes cgroup.procs.  Otherwise it is the cgroup's
         * answer. */
        if (pid < 0 && p->cgroup_required && !clone3_unusable(errno)) {
            int refused = errno;
            sigprocmask(SIG_SETMASK, &old, NULL);
            return -refused;
        }
    }
    if (pid < 0)
        pid = (pid_t)syscall(SYS_clone, SIGCHLD | p->clone_flags, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        p->in_cgroup = in_cgroup;
        reset_signals();
        child_main(p);
        _exit(127);
    }
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid < 0 ? -saved : pid;
}
