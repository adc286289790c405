/*
 * ocipy-init: the last stage of a container's first process (and of every
 * `ocipy exec` process), from "ready" to the container's execve.
 *
 * The child cloned by spawn.pyx is a copy of the runtime, so /proc/self/exe
 * is the host's Python interpreter until it executes something else.  It
 * does everything that needs the runtime (namespaces, the root filesystem,
 * hooks up to createContainer), writes the rest of its plan to a memfd
 * (pack_stage2 in child.c, format in child.h) and executes this program from
 * a sealed memfd the parent prepared.  This program reads the plan back and
 * runs oci_stage2() from child.c: the same code, in a small static image
 * that nothing in the container can modify and that runs nothing of the host.
 *
 * Built static (the container's root has no loader or libc of ours) and
 * embedded in the spawn extension by setup.py.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "child.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct blob_reader {
    const char *at;
    const char *end;
};

static const void *take(struct blob_reader *r, size_t len)
{
    if ((size_t)(r->end - r->at) < len)
        return NULL;
    const void *data = r->at;
    r->at += len;
    return data;
}

static int take_u32(struct blob_reader *r, uint32_t *v)
{
    const void *data = take(r, sizeof *v);
    if (!data)
        return -1;
    memcpy(v, data, sizeof *v);
    return 0;
}

/* a string written by blob_str: points into the mapped blob */
static int take_str(struct blob_reader *r, const char **out)
{
    uint32_t len;
    if (take_u32(r, &len) < 0)
        return -1;
    if (len == OCI_BLOB_NULL) {
        *out = NULL;
        return 0;
    }
    const char *s = take(r, (size_t)len + 1);
    if (!s || s[len] != '\0')
        return -1;
    *out = s;
    return 0;
}

static int take_strv(struct blob_reader *r, char *const **out)
{
    uint32_t n;
    if (take_u32(r, &n) < 0 || n > (uint32_t)(r->end - r->at))
        return -1;
    const char **v = calloc((size_t)n + 1, sizeof *v);
    if (!v)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        if (take_str(r, &v[i]) < 0 || !v[i])
            return -1;
    *out = (char *const *)v;
    return 0;
}

/* Fill p from the memfd: the struct as the child had it, with every pointer
 * replaced by one into the mapping (or NULL where stage 2 reads nothing). */
static int unpack(struct oci_plan *p, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)(2 * sizeof(uint32_t) + sizeof *p))
        return -1;
    const char *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return -1;
    struct blob_reader r = {map, map + st.st_size};
    uint32_t magic, size;
    if (take_u32(&r, &magic) < 0 || take_u32(&r, &size) < 0 || magic != OCI_BLOB_MAGIC ||
        size != sizeof *p)
        return -1;
    memcpy(p, take(&r, sizeof *p), sizeof *p);

    /* stage 1's pointers: none of it is read from here on */
    p->timens_offsets = p->keyring = p->rootfs = p->hostname = p->domainname = NULL;
    p->path_env = NULL;
    p->mounts = NULL;
    p->n_mounts = 0;
    p->devices = NULL;
    p->n_devices = 0;
    p->masked = p->readonly_paths = p->sysctl_paths = p->sysctl_values = NULL;
    p->n_masked = p->n_readonly = p->n_sysctl = 0;
    p->create_container_hooks = NULL;
    p->n_create_container_hooks = 0;
    p->n_joins = 0;
    p->console_fd = -1;
    p->init_fd = -1;

    const char *groups, *filter;
    uint32_t state_len;
    if (take_strv(&r, &p->argv) < 0 || take_strv(&r, &p->envp) < 0 ||
        take_str(&r, &p->cwd) < 0 || take_str(&r, &p->apparmor_profile) < 0 ||
        take_str(&r, &p->selinux_label) < 0 || p->n_groups < 0 ||
        !(groups = take(&r, (size_t)p->n_groups * sizeof(gid_t))) ||
        !(filter = take(&r, p->seccomp_len)) || take_u32(&r, &state_len) < 0)
        return -1;
    gid_t *gids = calloc((size_t)p->n_groups + 1, sizeof *gids); /* aligned */
    if (!gids)
        return -1;
    memcpy(gids, groups, (size_t)p->n_groups * sizeof *gids);
    p->groups = gids;
    p->seccomp_filter = (const unsigned char *)filter;
    p->hook_state = NULL;
    p->hook_state_cap = 0;
    if (state_len != OCI_BLOB_NULL) {
        const char *state = take(&r, state_len);
        if (!state || state_len == 0 || state[state_len - 1] != '\0')
            return -1;
        p->hook_state = (char *)state;
        p->hook_state_cap = state_len;
    }
    if (p->n_start_container_hooks < 0)
        return -1;
    p->start_container_hooks = calloc((size_t)p->n_start_container_hooks + 1,
                                      sizeof *p->start_container_hooks);
    if (!p->start_container_hooks)
        return -1;
    for (int i = 0; i < p->n_start_container_hooks; i++) {
        struct oci_hook *h = &p->start_container_hooks[i];
        uint32_t timeout;
        if (take_str(&r, &h->path) < 0 || !h->path || take_strv(&r, &h->argv) < 0 ||
            take_strv(&r, &h->envp) < 0 || take_u32(&r, &timeout) < 0)
            return -1;
        h->timeout = (int)timeout;
    }
    return r.at == r.end ? 0 : -1;
}

static void say(const char *text)
{
    ssize_t n = write(2, text, strlen(text));
    (void)n;
}

int main(int argc, char **argv)
{
    /* first: nothing in the container may ptrace us or read our fds */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* a process executed from an fd is named after the fd's number */
    prctl(PR_SET_NAME, OCI_INIT_ARGV0, 0, 0, 0);

    char *end = NULL;
    long fd = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || strcmp(argv[0], OCI_INIT_ARGV0) != 0 || !end || *end || fd < 3) {
        /* e.g. a container process executing /proc/self/exe, or a
         * `#!/proc/self/exe` script: there is nothing of the host here */
        say("ocipy-init: ocipy's container init stage; not a program to run\n");
        return 127;
    }
    static struct oci_plan plan;
    if (unpack(&plan, (int)fd) < 0) {
        say("ocipy-init: the plan from ocipy is unreadable\n");
        return 127;
    }
    close((int)fd);
    oci_stage2(&plan);
    return 127;
}
