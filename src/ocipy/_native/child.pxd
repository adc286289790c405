# C declarations of child.h: the plan the child executes between clone and execve.
from libc.stdint cimport int32_t, uint64_t
from posix.types cimport gid_t
from posix.resource cimport rlimit

cdef extern from "child.h" nogil:
    enum:
        OCI_MAX_JOINS
        OCI_MAX_RLIMITS
        OCI_DETAIL_LEN
        OCI_PATH_LEN

    struct oci_mount:
        const char *source
        int source_fd
        const char *dest
        const char *fstype
        const char *data
        unsigned long flags
        unsigned long remount_flags
        unsigned long propagation[4]
        int n_propagation
        int is_bind
        int dest_is_file
        int no_symlink
        int index

    struct oci_device:
        const char *path
        unsigned int mode
        unsigned int major
        unsigned int minor
        unsigned int uid
        unsigned int gid
        int index

    struct oci_hook:
        const char *path
        char *const *argv
        char *const *envp
        int timeout

    struct oci_ns_join:
        int fd
        int nstype
        int index

    struct oci_plan:
        int clone_flags
        int unshare_flags
        oci_ns_join joins[8]
        int n_joins
        int new_userns
        int new_cgroupns
        int fork_after_ns
        const char *timens_offsets
        const char *keyring
        int sync_fd
        int fifo_fd
        int console_fd
        unsigned short console_rows
        unsigned short console_cols
        int setup_rootfs
        const char *rootfs
        unsigned long rootfs_propagation
        unsigned long initial_propagation
        int root_readonly
        int no_pivot
        int host_mount_ns
        oci_mount *mounts
        int n_mounts
        int make_devices
        int bind_devices
        oci_device *devices
        int n_devices
        const char **masked
        int n_masked
        const char **readonly_paths
        int n_readonly
        const char *hostname
        const char *domainname
        const char **sysctl_paths
        const char **sysctl_values
        int n_sysctl
        int has_process
        char *const *argv
        char *const *envp
        const char *path_env
        const char *cwd
        int n_rlimits
        int rlimit_resource[16]
        rlimit rlimits[16]
        int has_oom_score_adj
        int oom_score_adj
        unsigned int umask
        unsigned int uid
        unsigned int gid
        const gid_t *groups
        int n_groups
        int set_groups
        int has_caps
        int last_cap
        uint64_t cap_bounding
        uint64_t cap_effective
        uint64_t cap_inheritable
        uint64_t cap_permitted
        uint64_t cap_ambient
        int no_new_privs
        const char *apparmor_profile
        const char *selinux_label
        int preserve_fds
        const unsigned char *seccomp_filter
        size_t seccomp_len
        unsigned int seccomp_flags
        int seccomp_listener_fd
        int hooks_sync
        oci_hook *create_container_hooks
        int n_create_container_hooks
        oci_hook *start_container_hooks
        int n_start_container_hooks
        char *hook_state
        size_t hook_state_cap
        int cgroup_fd
        int cgroup_procs_fd
        int cgroup_required
        const int *tasks_fds
        const unsigned char *tasks_required
        int n_tasks
        int in_cgroup
        int parent_places
        int init_fd
        int peer_fd
        int parent_pid
        int trace

    int oci_spawn(oci_plan *plan)

cdef extern from "child.h" nogil:
    struct oci_msg:
        int32_t type
        int32_t step
        int32_t err
        int32_t index
        char detail[480]
