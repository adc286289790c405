# cython: language_level=3
"""Compile a seccomp profile into a classic BPF program with libseccomp.

The parent compiles before clone (ocipy.seccomp builds the profile dict this
module takes); the child only hands the bytes to seccomp(2) right before
execve.  Nothing here loads a filter into the calling process: we never call
seccomp_load(), so the libseccomp attributes that only matter at load time
(NNP, TSYNC, LOG, SSB) are set for consistency and the caller passes the
matching SECCOMP_FILTER_FLAG_* itself.
"""
from libc.errno cimport EEXIST, EFAULT
from libc.stdint cimport uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport strerror

import os

cdef extern from *:
    """
    #include <errno.h>
    #include <linux/seccomp.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    #ifndef SECCOMP_GET_ACTION_AVAIL
    #define SECCOMP_GET_ACTION_AVAIL 2
    #endif
    /* seccomp(2) has no glibc wrapper in bookworm */
    static int ocipy_seccomp_action_avail(uint32_t action)
    {
        return (int)syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action);
    }
    /* runc's probe (patchbpf.FlagSupported): with a NULL program the kernel
     * checks the flags first (EINVAL when unknown), then faults on the
     * program (EFAULT): nothing is ever loaded. */
    static int ocipy_seccomp_flags_probe(unsigned int flags)
    {
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, NULL) == 0)
            return 0;
        return errno;
    }
    """
    int ocipy_seccomp_action_avail(uint32_t action) nogil
    int ocipy_seccomp_flags_probe(unsigned int flags) nogil


# OCI action name -> libseccomp action (the value is the kernel's
# SECCOMP_RET_*).  ERRNO and TRACE get their 16-bit data in action_value().
ACTIONS = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": SCMP_ACT_ERRNO(0),
    "SCMP_ACT_TRACE": SCMP_ACT_TRACE(0),
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_NOTIFY": SCMP_ACT_NOTIFY,
}

# OCI operator name -> enum scmp_compare
OPERATORS = {
    "SCMP_CMP_NE": SCMP_CMP_NE,
    "SCMP_CMP_LT": SCMP_CMP_LT,
    "SCMP_CMP_LE": SCMP_CMP_LE,
    "SCMP_CMP_EQ": SCMP_CMP_EQ,
    "SCMP_CMP_GE": SCMP_CMP_GE,
    "SCMP_CMP_GT": SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ,
}

# The six syscall arguments libseccomp can compare.
MAX_ARGS = 6


class FilterError(Exception):
    """libseccomp refused a step.

    ``rule`` and ``arch`` index profile["rules"] and profile["architectures"]
    (-1 when the step was not about one of them); ``errno`` is libseccomp's.
    """

    def __init__(self, message, *, rule=-1, arch=-1, errno=0):
        self.rule = rule
        self.arch = arch
        self.errno = errno
        super().__init__(message)


cdef str _strerror(int rc):
    return strerror(-rc).decode().lower() if rc < 0 else ""


def libseccomp_version():
    """The version of the libseccomp this process runs with, e.g. "2.5.4"."""
    cdef const scmp_version *v = seccomp_version()
    return f"{v.major}.{v.minor}.{v.micro}"


def api_level():
    """libseccomp's API level for the running kernel (seccomp_api_get(3))."""
    return seccomp_api_get()


def action_value(str name, unsigned int data=0):
    """The libseccomp action for an OCI action name; data is ERRNO/TRACE's errno."""
    if name == "SCMP_ACT_ERRNO":
        return SCMP_ACT_ERRNO(data)
    if name == "SCMP_ACT_TRACE":
        return SCMP_ACT_TRACE(data)
    return ACTIONS[name]


def arch_token(arch=None):
    """The libseccomp token of an arch ("SCMP_ARCH_X86_64" or "x86_64"); None = native.

    Returns None for a name this libseccomp does not know; a token (int) is
    returned as is.
    """
    if arch is None:
        return seccomp_arch_native()
    if isinstance(arch, int):
        return arch
    name = arch[len("SCMP_ARCH_"):].lower() if arch.startswith("SCMP_ARCH_") else arch
    cdef bytes b = name.encode()
    cdef uint32_t token = seccomp_arch_resolve_name(b)
    return token if token != 0 else None


def resolve_syscall(str name, arch=None):
    """The number of syscall ``name`` on ``arch`` (see arch_token; None = native).

    None when libseccomp does not know the name at all; a negative
    libseccomp pseudo-number when it knows the name but ``arch`` has no such
    syscall (socketcall on x86_64).  x32 numbers include __X32_SYSCALL_BIT.
    """
    token = arch_token(arch)
    if token is None:
        raise ValueError(f"unknown seccomp architecture {arch!r}")
    if "\0" in name:
        return None  # would be cut at the NUL and resolve as another name
    cdef bytes b = name.encode()
    cdef int nr = seccomp_syscall_resolve_name_arch(token, b)
    return None if nr == __NR_SCMP_ERROR else nr


def action_available(uint32_t action):
    """Whether the running kernel implements a SECCOMP_RET_* action."""
    return ocipy_seccomp_action_avail(action & 0xffff0000u) == 0


def filter_flags_supported(unsigned int flags):
    """Whether the running kernel accepts these SECCOMP_FILTER_FLAG_* together."""
    return ocipy_seccomp_flags_probe(flags) == EFAULT  # the flags passed, the NULL did not


cdef int _set_attr(scmp_filter_ctx ctx, scmp_filter_attr attr, uint32_t value, str what) except -1:
    cdef int rc = seccomp_attr_set(ctx, attr, value)
    if rc < 0:
        raise FilterError(f"set {what}: {_strerror(rc)}", errno=-rc)
    return 0


cdef int _add_rule(scmp_filter_ctx ctx, dict rule, Py_ssize_t index) except -1:
    cdef bytes name = (<str>rule["syscall"]).encode()
    cdef int nr = seccomp_syscall_resolve_name(name) if b"\0" not in name else __NR_SCMP_ERROR
    if nr == __NR_SCMP_ERROR:
        raise FilterError(f"unknown syscall {rule['syscall']!r}", rule=index)
    args = rule.get("args") or ()
    if len(args) > MAX_ARGS:
        raise FilterError(f"{len(args)} argument conditions, at most {MAX_ARGS}", rule=index)
    cdef scmp_arg_cmp cmp[6]
    cdef Py_ssize_t i
    for i, (arg, op, datum_a, datum_b) in enumerate(args):
        cmp[i].arg = arg
        cmp[i].op = <scmp_compare>op
        cmp[i].datum_a = datum_a
        cmp[i].datum_b = datum_b
    cdef int rc = seccomp_rule_add_array(ctx, rule["action"], nr, <unsigned int>len(args), cmp)
    if rc < 0:
        raise FilterError(f"add the rule for {rule['syscall']}: {_strerror(rc)}",
                          rule=index, errno=-rc)
    return 0


cdef bytes _export(scmp_filter_ctx ctx):
    # 2.5.x can only export to an fd: a memfd, so a big filter never blocks
    # the way a pipe we read after the write would.
    fd = os.memfd_create("ocipy-seccomp", os.MFD_CLOEXEC)
    cdef int rc
    try:
        rc = seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise FilterError(f"export the filter: {_strerror(rc)}", errno=-rc)
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def compile_filter(dict profile):
    """Compile a normalised profile into the raw BPF program (struct sock_filter[]).

    profile keys (built by ocipy.seccomp, which validated every value):
      default_action  libseccomp action (action_value())
      architectures   arch tokens added besides the native one
      rules           [{"syscall": name, "action": int, "args": [(index, op, datum_a, datum_b)]}]
                      one libseccomp rule each: conditions on one rule are ANDed
      log, ssb        SCMP_FLTATR_CTL_LOG / CTL_SSB (load-time only)
      optimize        SCMP_FLTATR_CTL_OPTIMIZE level (1 default, 2 binary tree)
    Raises FilterError naming the rule libseccomp refused.
    """
    cdef scmp_filter_ctx ctx = seccomp_init(profile["default_action"])
    if ctx == NULL:
        raise FilterError("seccomp_init: invalid default action")
    cdef int rc
    cdef Py_ssize_t index
    try:
        for index, token in enumerate(profile.get("architectures", ())):
            rc = seccomp_arch_add(ctx, token)
            # -EEXIST: the native arch is in every filter already (as runc)
            if rc < 0 and rc != -EEXIST:
                raise FilterError(f"add architecture {token:#x}: {_strerror(rc)}",
                                  arch=index, errno=-rc)
        # the child sets no_new_privs itself when process.noNewPrivileges asks
        _set_attr(ctx, SCMP_FLTATR_CTL_NNP, 0, "no_new_privs")
        if profile.get("log"):
            _set_attr(ctx, SCMP_FLTATR_CTL_LOG, 1, "SECCOMP_FILTER_FLAG_LOG")
        if profile.get("ssb"):
            _set_attr(ctx, SCMP_FLTATR_CTL_SSB, 1, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
        optimize = profile.get("optimize", 1)
        if optimize != 1:
            _set_attr(ctx, SCMP_FLTATR_CTL_OPTIMIZE, optimize, "optimize")
        for index, rule in enumerate(profile.get("rules", ())):
            _add_rule(ctx, rule, index)
        return _export(ctx)
    finally:
        seccomp_release(ctx)
