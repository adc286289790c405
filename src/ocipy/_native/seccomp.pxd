# C declarations of libseccomp (<seccomp.h>, 2.5.x) used by seccomp.pyx.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "seccomp.h" nogil:
    ctypedef void *scmp_filter_ctx
    ctypedef uint64_t scmp_datum_t

    struct scmp_version:
        unsigned int major
        unsigned int minor
        unsigned int micro

    enum scmp_filter_attr:
        SCMP_FLTATR_ACT_DEFAULT
        SCMP_FLTATR_ACT_BADARCH
        SCMP_FLTATR_CTL_NNP
        SCMP_FLTATR_CTL_TSYNC
        SCMP_FLTATR_API_TSKIP
        SCMP_FLTATR_CTL_LOG
        SCMP_FLTATR_CTL_SSB
        SCMP_FLTATR_CTL_OPTIMIZE
        SCMP_FLTATR_API_SYSRAWRC

    enum scmp_compare:
        SCMP_CMP_NE
        SCMP_CMP_LT
        SCMP_CMP_LE
        SCMP_CMP_EQ
        SCMP_CMP_GE
        SCMP_CMP_GT
        SCMP_CMP_MASKED_EQ

    struct scmp_arg_cmp:
        unsigned int arg
        scmp_compare op
        scmp_datum_t datum_a
        scmp_datum_t datum_b

    # Actions; ERRNO and TRACE carry 16 bits of data (SCMP_ACT_ERRNO(x)).
    uint32_t SCMP_ACT_KILL_PROCESS
    uint32_t SCMP_ACT_KILL_THREAD
    uint32_t SCMP_ACT_KILL
    uint32_t SCMP_ACT_TRAP
    uint32_t SCMP_ACT_NOTIFY
    uint32_t SCMP_ACT_LOG
    uint32_t SCMP_ACT_ALLOW
    uint32_t SCMP_ACT_ERRNO(uint32_t x)
    uint32_t SCMP_ACT_TRACE(uint32_t x)

    uint32_t SCMP_ARCH_NATIVE
    int __NR_SCMP_ERROR

    const scmp_version *seccomp_version()
    unsigned int seccomp_api_get()

    scmp_filter_ctx seccomp_init(uint32_t def_action)
    void seccomp_release(scmp_filter_ctx ctx)

    uint32_t seccomp_arch_resolve_name(const char *arch_name)
    uint32_t seccomp_arch_native()
    int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token)

    int seccomp_attr_set(scmp_filter_ctx ctx, scmp_filter_attr attr, uint32_t value)

    int seccomp_syscall_resolve_name(const char *name)
    int seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name)

    int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                               unsigned int arg_cnt, const scmp_arg_cmp *arg_array)

    int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd)
