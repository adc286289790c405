/*
 * The container side of ocipy: everything that runs between clone() and
 * execve().  Python computes a plan; spawn.pyx copies it into the C structs
 * below before the clone, and the child reads nothing else.  The child runs
 * no Python bytecode, takes no interpreter lock and allocates nothing: only
 * system calls and string operations on memory prepared by the parent, so it
 * is as async-signal-safe as CPython's own _posixsubprocess child.
 */
#ifndef OCIPY_CHILD_H
#define OCIPY_CHILD_H

#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#define OCI_MAX_JOINS 8
#define OCI_MAX_RLIMITS 16
#define OCI_DETAIL_LEN 480
#define OCI_PATH_LEN 4096

/* Messages the child sends to the parent over the sync socket (and, after
 * `start` released it, an OCI_MSG_ERROR over the exec fifo). */
enum oci_msg_type {
    OCI_MSG_USERNS = 1, /* my user namespace exists: write uid_map/gid_map, then ack */
    OCI_MSG_READY = 2,  /* set up and waiting on the exec fifo (the sender's pid is the init) */
    OCI_MSG_ERROR = 3,  /* a step failed; the child exits after sending this */
    OCI_MSG_HOOKS = 4,  /* mounts done: run prestart/createRuntime, then send the state */
    OCI_MSG_TRACE = 5,  /* --debug: a step done; err = its duration in microseconds */
};

/* The step that failed, for the parent to word the error. Keep in sync with
 * ocipy/launch.py (STEP_NAMES). */
enum oci_step {
    OCI_STEP_SETUP = 0,
    OCI_STEP_SYNC,
    OCI_STEP_SETNS,
    OCI_STEP_UNSHARE,
    OCI_STEP_USERNS,
    OCI_STEP_TIMENS,
    OCI_STEP_FORK,
    OCI_STEP_PROPAGATION,
    OCI_STEP_ROOTFS,
    OCI_STEP_MKDIR,
    OCI_STEP_MOUNT,
    OCI_STEP_DEVICE,
    OCI_STEP_PIVOT,
    OCI_STEP_MASK,
    OCI_STEP_READONLY,
    OCI_STEP_HOSTNAME,
    OCI_STEP_DOMAINNAME,
    OCI_STEP_SYSCTL,
    OCI_STEP_CWD,
    OCI_STEP_LOOKUP,
    OCI_STEP_FIFO,
    OCI_STEP_RLIMIT,
    OCI_STEP_OOM,
    OCI_STEP_USER,
    OCI_STEP_CAPS,
    OCI_STEP_NNP,
    OCI_STEP_LSM,
    OCI_STEP_KEYRING,
    OCI_STEP_EXEC,
    OCI_STEP_CONSOLE,
    OCI_STEP_HOOK_CREATE_CONTAINER,
    OCI_STEP_HOOK_START_CONTAINER,
    OCI_STEP_SECCOMP,
    OCI_STEP_INIT,
    OCI_STEP_CGROUP,
};

struct oci_msg {
    int32_t type;
    int32_t step;
    int32_t err;   /* errno, 0 when the detail says it all */
    int32_t index; /* index into the config list the step worked on, or -1 */
    char detail[OCI_DETAIL_LEN];
};

struct oci_mount {
    const char *source; /* host path for binds, else the fs source; may be NULL */
    int source_fd;      /* binds: a detached clone of the source (open_tree), or -1 */
    const char *dest;   /* absolute path inside the container */
    const char *fstype; /* may be NULL for binds */
    const char *data;   /* fs-specific options; may be NULL */
    unsigned long flags;        /* flags of the first mount(2) */
    unsigned long remount_flags;/* binds: MS_REMOUNT|MS_BIND|... applied after, 0 for none */
    unsigned long propagation[4];
    int n_propagation;
    int is_bind;
    int dest_is_file;   /* create the destination as a file (bind of a non-directory) */
    int no_symlink;     /* proc/sysfs: refuse a destination that is a symlink */
    int index;          /* position in config mounts[], -1 for ocipy's own */
};

struct oci_device {
    const char *path;   /* absolute path inside the container */
    unsigned int mode;  /* file type bits | permissions */
    unsigned int major, minor;
    unsigned int uid, gid;
    int index;          /* position in linux.devices[], -1 for a default device */
};

struct oci_hook {
    const char *path;
    char *const *argv;
    char *const *envp;
    int timeout;        /* seconds, 0 for none */
};

struct oci_ns_join {
    int fd;     /* opened by the parent from the namespace path */
    int nstype; /* CLONE_NEW* */
    int index;  /* position in linux.namespaces[] */
};

struct oci_plan {
    /* namespaces */
    int clone_flags;    /* created by clone() itself */
    int unshare_flags;  /* created by unshare() after the joins */
    struct oci_ns_join joins[OCI_MAX_JOINS];
    int n_joins;
    int new_userns;     /* ask the parent for the id maps */
    int new_cgroupns;   /* unshared once the parent placed us in our cgroups */
    int fork_after_ns;  /* pid/time namespaces apply to children: fork once more */
    const char *timens_offsets;
    const char *keyring; /* name of a new session keyring, NULL for none */

    /* channels */
    int sync_fd;        /* the child's end of the socketpair */
    int fifo_fd;        /* O_PATH fd of exec.fifo; -1: exec right away (ocipy exec) */
    int console_fd;     /* connected console socket, -1 for none */
    unsigned short console_rows, console_cols; /* process.consoleSize, 0 for unset */

    /* root filesystem */
    int setup_rootfs;
    const char *rootfs; /* absolute host path */
    unsigned long rootfs_propagation; /* applied to / after pivot_root, 0 for none */
    unsigned long initial_propagation;/* applied recursively to / before anything */
    int root_readonly;
    int no_pivot;
    int host_mount_ns;  /* no mount namespace: build the tree in ours, then chroot */
    struct oci_mount *mounts;
    int n_mounts;
    int make_devices;   /* /dev is ours: create devices, links, ptmx */
    int bind_devices;   /* in a user namespace: bind host devices instead of mknod */
    struct oci_device *devices;
    int n_devices;
    const char **masked;
    int n_masked;
    const char **readonly_paths;
    int n_readonly;
    const char *hostname;
    const char *domainname;
    const char **sysctl_paths;   /* /proc/sys/... */
    const char **sysctl_values;
    int n_sysctl;

    /* the process */
    int has_process;
    char *const *argv;
    char *const *envp;
    const char *path_env; /* the process's PATH, NULL when unset */
    const char *cwd;
    int n_rlimits;
    int rlimit_resource[OCI_MAX_RLIMITS];
    struct rlimit rlimits[OCI_MAX_RLIMITS];
    int has_oom_score_adj;
    int oom_score_adj;
    unsigned int umask;
    unsigned int uid, gid;
    const gid_t *groups;
    int n_groups;
    int set_groups;       /* 0 inside a user namespace whose setgroups is denied */
    int has_caps;
    int last_cap;
    uint64_t cap_bounding, cap_effective, cap_inheritable, cap_permitted, cap_ambient;
    int no_new_privs;
    const char *apparmor_profile; /* written to attr/apparmor/exec */
    const char *selinux_label;    /* written to attr/exec */
    int preserve_fds;
    const unsigned char *seccomp_filter; /* classic BPF compiled by the parent (libseccomp) */
    size_t seccomp_len;                   /* bytes: 8 per instruction; 0 for none */
    unsigned int seccomp_flags;           /* SECCOMP_FILTER_FLAG_* */
    int seccomp_listener_fd;              /* connected to listenerPath (NOTIFY), or -1 */

    /* hooks run inside the container's namespaces */
    int hooks_sync;     /* stop before pivot_root: the parent runs its hooks and sends the state */
    struct oci_hook *create_container_hooks;
    int n_create_container_hooks;
    struct oci_hook *start_container_hooks;
    int n_start_container_hooks;
    char *hook_state;   /* from the parent: the state JSON for createContainer, NUL, the one
                         * for startContainer, NUL, the seccomp listener's payload */
    size_t hook_state_cap;

    /* the container's cgroups, which the child enters before anything else
     * (join_cgroups in child.c); fds opened by the parent, -1/0 for none */
    int cgroup_fd;        /* a cgroup2 directory: clone3(CLONE_INTO_CGROUP) */
    int cgroup_procs_fd;  /* its cgroup.procs: "0" there if clone3 refused */
    int cgroup_required;  /* else best effort (the unified hierarchy of a hybrid host) */
    const int *tasks_fds; /* cgroup v1: each hierarchy's `tasks`, "0" written there */
    const unsigned char *tasks_required; /* per fd: else best effort */
    int n_tasks;
    int in_cgroup;        /* scratch: clone3 put the child in cgroup_fd */

    int parent_places;  /* the parent moves us into our cgroups after the clone (the
                         * systemd driver): wait for its go-ahead before going on */

    int init_fd;        /* sealed memfd holding ocipy-init, executed for stage 2 */
    int peer_fd;        /* the parent's end of the sync socket: the child closes it */
    pid_t parent_pid;   /* who cloned us: gone before our PDEATHSIG was set means quit */
    int trace;          /* send OCI_MSG_TRACE records (--debug) */

    /* scratch the child fills: the executable found on PATH */
    char exec_path[OCI_PATH_LEN];
    int report_fd;      /* where errors go now: sync_fd, then the fifo */
    int report_is_fifo;
};

/* The hand-over to ocipy-init (init.c): the child writes the plan's stage-2
 * part to a memfd and executes ocipy-init with argv {OCI_INIT_ARGV0, "<fd>"}.
 * The memfd holds: u32 OCI_BLOB_MAGIC, u32 sizeof(struct oci_plan), the
 * struct itself (its pointers are meaningless to the reader), then argv,
 * envp (u32 count + strings), cwd, apparmor_profile, selinux_label (u32
 * length or OCI_BLOB_NULL, bytes, NUL), n_groups gids, seccomp_len bytes of
 * filter, the hook state (u32 length or OCI_BLOB_NULL, bytes), and per
 * startContainer hook its path, argv, envp and u32 timeout.  Both sides are
 * built from this header by the same compiler. */
#define OCI_INIT_ARGV0 "ocipy-init"
#define OCI_BLOB_MAGIC 0x3269636fU /* "oci2" */
#define OCI_BLOB_NULL 0xffffffffU

/* Stage 2, run by ocipy-init: from "ready" to the container's execve. */
void oci_stage2(struct oci_plan *plan);

/* Clone the child described by plan and return its pid (or -errno).  In the
 * parent only; the child never returns from this call. */
int oci_spawn(struct oci_plan *plan);

#endif
