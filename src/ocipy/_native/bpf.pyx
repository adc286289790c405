# cython: language_level=3
"""The few bpf(2) commands the cgroup v2 device filter needs.

bpf(2) has no glibc wrapper and takes a union the stdlib cannot build, so
these wrappers fill ``union bpf_attr`` in C.  They only pass bytes and file
descriptors through: the program itself is generated in pure Python
(ocipy.cgroups.devices), and the attach policy (query, replace, detach the
old programs) is decided there too.  Every wrapper raises OSError with the
kernel's errno.
"""
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, malloc

cdef extern from *:
    """
    #include <errno.h>
    #include <string.h>
    #include <stdint.h>
    #include <unistd.h>
    #include <sys/syscall.h>
    #include <linux/bpf.h>

    #ifndef BPF_F_REPLACE
    #define BPF_F_REPLACE (1U << 2)
    #endif

    static int ocipy_bpf(int cmd, union bpf_attr *attr)
    {
        long ret = syscall(SYS_bpf, cmd, attr, sizeof(*attr));
        return ret < 0 ? -errno : (int)ret;
    }

    static int ocipy_bpf_prog_load(unsigned int prog_type, const void *insns, unsigned int insn_cnt,
                                   const char *license, char *log, unsigned int log_size)
    {
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.prog_type = prog_type;
        attr.insns = (uint64_t)(uintptr_t)insns;
        attr.insn_cnt = insn_cnt;
        attr.license = (uint64_t)(uintptr_t)license;
        if (log != NULL && log_size > 0) {
            log[0] = '\\0';
            attr.log_level = 1;
            attr.log_buf = (uint64_t)(uintptr_t)log;
            attr.log_size = log_size;
        }
        return ocipy_bpf(BPF_PROG_LOAD, &attr);
    }

    static int ocipy_bpf_prog_attach(int prog_fd, int target_fd, unsigned int attach_type,
                                     unsigned int flags, int replace_fd)
    {
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.target_fd = target_fd;
        attr.attach_bpf_fd = prog_fd;
        attr.attach_type = attach_type;
        attr.attach_flags = flags;
        if (replace_fd >= 0)
            attr.replace_bpf_fd = replace_fd;
        return ocipy_bpf(BPF_PROG_ATTACH, &attr);
    }

    static int ocipy_bpf_prog_detach(int prog_fd, int target_fd, unsigned int attach_type)
    {
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.target_fd = target_fd;
        attr.attach_bpf_fd = prog_fd;
        attr.attach_type = attach_type;
        return ocipy_bpf(BPF_PROG_DETACH, &attr);
    }

    /* *count: capacity in, number of programs out (also on ENOSPC) */
    static int ocipy_bpf_prog_query(int target_fd, unsigned int attach_type, uint32_t *ids,
                                    uint32_t *count, uint32_t *attach_flags)
    {
        union bpf_attr attr;
        int ret;
        memset(&attr, 0, sizeof(attr));
        attr.query.target_fd = target_fd;
        attr.query.attach_type = attach_type;
        attr.query.prog_ids = (uint64_t)(uintptr_t)ids;
        attr.query.prog_cnt = *count;
        ret = ocipy_bpf(BPF_PROG_QUERY, &attr);
        *count = attr.query.prog_cnt;
        *attach_flags = attr.query.attach_flags;
        return ret;
    }

    static int ocipy_bpf_prog_get_fd_by_id(uint32_t id)
    {
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.prog_id = id;
        return ocipy_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
    }
    """
    int BPF_PROG_TYPE_CGROUP_DEVICE_ "BPF_PROG_TYPE_CGROUP_DEVICE"
    int BPF_CGROUP_DEVICE_ "BPF_CGROUP_DEVICE"
    int BPF_F_ALLOW_OVERRIDE_ "BPF_F_ALLOW_OVERRIDE"
    int BPF_F_ALLOW_MULTI_ "BPF_F_ALLOW_MULTI"
    int BPF_F_REPLACE_ "BPF_F_REPLACE"
    int ocipy_bpf_prog_load(unsigned int prog_type, const void *insns, unsigned int insn_cnt,
                            const char *license, char *log, unsigned int log_size) nogil
    int ocipy_bpf_prog_attach(int prog_fd, int target_fd, unsigned int attach_type,
                              unsigned int flags, int replace_fd) nogil
    int ocipy_bpf_prog_detach(int prog_fd, int target_fd, unsigned int attach_type) nogil
    int ocipy_bpf_prog_query(int target_fd, unsigned int attach_type, uint32_t *ids,
                             uint32_t *count, uint32_t *attach_flags) nogil
    int ocipy_bpf_prog_get_fd_by_id(uint32_t id) nogil

import os

PROG_TYPE_CGROUP_DEVICE = BPF_PROG_TYPE_CGROUP_DEVICE_
CGROUP_DEVICE = BPF_CGROUP_DEVICE_
F_ALLOW_OVERRIDE = BPF_F_ALLOW_OVERRIDE_
F_ALLOW_MULTI = BPF_F_ALLOW_MULTI_
F_REPLACE = BPF_F_REPLACE_
INSN_SIZE = 8

# the verifier log is only asked for after a failed load (crun's order)
cdef unsigned int LOG_SIZE_FIRST = 1 << 16
cdef unsigned int LOG_SIZE_MAX = 1 << 22


cdef _raise(int ret, str what):
    code = -ret
    raise OSError(code, f"{what}: {os.strerror(code)}")


def prog_load(bytes insns, str license="GPL", int prog_type=BPF_PROG_TYPE_CGROUP_DEVICE_) -> int:
    """BPF_PROG_LOAD: the new program's fd (close-on-exec, as the kernel makes it).

    On failure the load is repeated with the verifier log, which ends up in
    the OSError's message.
    """
    if len(insns) == 0 or len(insns) % INSN_SIZE:
        raise ValueError("insns must be a non-empty sequence of 8-byte instructions")
    cdef bytes lic = license.encode()
    cdef const char *c_insns = insns
    cdef const char *c_lic = lic
    cdef unsigned int count = len(insns) // INSN_SIZE
    cdef unsigned int prog_type_u = prog_type
    cdef int ret
    with nogil:
        ret = ocipy_bpf_prog_load(prog_type_u, c_insns, count, c_lic, NULL, 0)
    if ret >= 0:
        return ret
    cdef unsigned int size = LOG_SIZE_FIRST
    cdef char *log
    while True:
        log = <char *>malloc(size)
        if log == NULL:
            raise MemoryError()
        try:
            with nogil:
                ret = ocipy_bpf_prog_load(prog_type_u, c_insns, count, c_lic, log, size)
            if ret >= 0:
                return ret
            if ret == -28 and size < LOG_SIZE_MAX:  # ENOSPC: the log did not fit
                size *= 2
                continue
            text = log[:size].split(b"\0", 1)[0].decode(errors="replace").strip()
        finally:
            free(log)
        code = -ret
        message = f"bpf prog load: {os.strerror(code)}"
        if text:
            message += f": verifier log: {text}"
        raise OSError(code, message)


def prog_attach(int prog_fd, int target_fd, int attach_type=BPF_CGROUP_DEVICE_,
                int flags=BPF_F_ALLOW_MULTI_, int replace_fd=-1) -> None:
    """BPF_PROG_ATTACH ``prog_fd`` to the cgroup directory ``target_fd``."""
    cdef int ret
    with nogil:
        ret = ocipy_bpf_prog_attach(prog_fd, target_fd, attach_type, flags, replace_fd)
    if ret < 0:
        _raise(ret, "bpf prog attach")


def prog_detach(int prog_fd, int target_fd, int attach_type=BPF_CGROUP_DEVICE_) -> None:
    """BPF_PROG_DETACH one program from the cgroup directory ``target_fd``."""
    cdef int ret
    with nogil:
        ret = ocipy_bpf_prog_detach(prog_fd, target_fd, attach_type)
    if ret < 0:
        _raise(ret, "bpf prog detach")


def prog_query(int target_fd, int attach_type=BPF_CGROUP_DEVICE_) -> tuple:
    """BPF_PROG_QUERY: (ids of the programs attached to the cgroup itself, attach flags)."""
    cdef uint32_t capacity = 64
    cdef uint32_t count
    cdef uint32_t flags = 0
    cdef uint32_t *ids
    cdef int ret
    while True:
        ids = <uint32_t *>malloc(capacity * sizeof(uint32_t))
        if ids == NULL:
            raise MemoryError()
        try:
            count = capacity
            with nogil:
                ret = ocipy_bpf_prog_query(target_fd, attach_type, ids, &count, &flags)
            if ret == -28 and count > capacity:  # ENOSPC: more programs than room
                capacity = count
                continue
            if ret < 0:
                _raise(ret, "bpf prog query")
            return [ids[i] for i in range(count)], flags
        finally:
            free(ids)


def prog_get_fd_by_id(uint32_t prog_id) -> int:
    """BPF_PROG_GET_FD_BY_ID: an fd for an attached program (to detach or replace it)."""
    cdef int ret
    with nogil:
        ret = ocipy_bpf_prog_get_fd_by_id(prog_id)
    if ret < 0:
        _raise(ret, "bpf prog get fd by id")
    return ret
