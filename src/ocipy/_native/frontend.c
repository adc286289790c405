/*
 * The native front-end of `ocipy`: it is installed as .venv/bin/ocipy and
 * answers `state`, `start`, `kill` and `delete` without starting CPython
 * (~9 ms before any work here; runc answers these in ~4 ms).
 *
 * It reads only the files Python pre-renders in the container's state dir
 * (src/ocipy/state.py, FAST_FILE, _fast_text and save) and mirrors the
 * Python code line by line for the simple cases.  Anything else -- another
 * command, a flag it does not handle, an error, anything unexpected --
 * execv()s the Python launcher with the same argv, so every message, the
 * --log file and every feature stay in one place: Python.  The hand-over
 * path never prints; Python does the talking.  OCIPY_NO_FAST=1 forces the
 * hand-over for everything (tests compare both paths with it).
 *
 * Plain C, no allocation: small static buffers, every fd close-on-exec so
 * nothing leaks into the launcher.
 *
 * Build: tools/cc-static ocipy -O2 -Wall -DLAUNCHER='"/abs/path/ocipy-py"' frontend.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef LAUNCHER
#error "build with -DLAUNCHER='\"/absolute/path/of/the/python/launcher\"'"
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define DEFAULT_ROOT "/run/ocipy" /* state.DEFAULT_ROOT */
#define POLL_MS 100               /* container._POLL_MS */
#define KILL_WAIT_MS 10000        /* container._KILL_WAIT_S */
#define FAST_MAGIC "ocipy-fast 1"
#define SIGRTMIN_GLIBC 34 /* signals.SIGRTMIN: glibc keeps 32 and 33 for NPTL */
#define SIGRTMAX_KERNEL 64

static char **g_argv;

/* ------------------------------------------------------------- hand-over */

/* Python words every failure and handles every other case.  The launcher
 * (ocipy/launcher.py) is embedded CPython, which gets this argv as it is,
 * or a `#!python -IS` script, for which the kernel puts the interpreter and
 * the script's path in front of argv[1..] (argv[0] is dropped): Python reads
 * sys.argv[1:] only. */
static void __attribute__((noreturn)) hand_over(void)
{
    execv(LAUNCHER, g_argv);
    /* the one message of our own: nobody else can speak now */
    dprintf(2, "ocipy: run the launcher \"%s\": %s\n", LAUNCHER, strerror(errno));
    _exit(1);
}

/* --------------------------------------------------------------- helpers */

static ssize_t read_retry(int fd, void *buf, size_t len)
{
    ssize_t n;
    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

/* The whole file into buf (NUL-terminated); -1 on an error, or when it does
 * not fit (Python reads it whole: let Python have the odd case). */
static ssize_t read_file_at(int dirfd, const char *name, char *buf, size_t size)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    size_t used = 0;
    ssize_t n;

    if (fd < 0)
        return -1;
    while ((n = read_retry(fd, buf + used, size - 1 - used)) > 0) {
        used += (size_t)n;
        if (used == size - 1) {
            n = -1;
            break;
        }
    }
    close(fd);
    if (n < 0)
        return -1;
    buf[used] = '\0';
    return (ssize_t)used;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A decimal number; 0 with *ok = 0 on anything else, saturating at `cap`
 * so long runs of digits ("RTMIN+000000000003" is 37, as int() says). */
static unsigned long long parse_digits(const char *s, unsigned long long cap, int *ok)
{
    unsigned long long v = 0;

    *ok = *s != '\0';
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            *ok = 0;
            return 0;
        }
        v = v * 10 + (unsigned)(*s - '0');
        if (v > cap)
            v = cap;
    }
    return v;
}

/* ------------------------------------------------------ the command line */

/* cli.py's parser, for the options these four commands can take.  Like cli
 * _lookup: `--opt value`, `--opt=value`, and Go's `-opt` for `--opt`. */

struct cmdline {
    const char *root;
    const char *command;
    const char *positional[2];
    int n_positional;
    int force; /* delete -f/--force */
};

/* The option's long name without its dashes ("root" for --root, -root,
 * --root=x), its value after '=' (NULL without one), or NULL for a short
 * option ("-v") or anything else not spelled like a long option. */
static const char *option_name(const char *arg, char *name, size_t size, const char **value)
{
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);

    *value = eq ? eq + 1 : NULL;
    if (len >= size)
        return NULL;
    memcpy(name, arg, len);
    name[len] = '\0';
    if (strncmp(name, "--", 2) == 0)
        return name + 2;
    if (len > 2)
        return name + 1; /* Go's flag package: -root means --root */
    return NULL;
}

/* A FLAG with "=value" is set by value.lower() in ("1", "true", "yes");
 * -1 for non-ASCII (Python's lower() is Unicode's: not ours to mirror). */
static int flag_value(const char *value)
{
    char low[8];
    size_t i;

    if (!value)
        return 1;
    for (i = 0; value[i]; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c >= 0x80)
            return -1;
        if (i >= sizeof low - 1)
            return 0;
        low[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    low[i] = '\0';
    return !strcmp(low, "1") || !strcmp(low, "true") || !strcmp(low, "yes");
}

static int one_of(const char *value, const char *a, const char *b, const char *c)
{
    return !strcmp(value, a) || !strcmp(value, b) || (c && !strcmp(value, c));
}

/* Fills *cl or hands over: cli.parse's every error, --help, --version,
 * --debug, and every command but these four go to Python. */
static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
    char buf[64];
    const char *name, *value;
    int i = 1;

    cl->root = DEFAULT_ROOT;
    /* global options: cli.parse's first loop */
    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "-") != 0) {
        name = option_name(argv[i], buf, sizeof buf, &value);
        if (!name)
            hand_over(); /* -v, -h, or an unknown short option */
        if (!strcmp(name, "systemd-cgroup")) {
            /* a FLAG; only create and run look at it */
            if (flag_value(value) < 0)
                hand_over();
            i++;
            continue;
        }
        /* --log is taken: Python writes to the log only on failure (every
         * failure here hands over) or with --debug; containerd's shim passes
         * --log --log-format json on every call */
        if (strcmp(name, "root") && strcmp(name, "log") && strcmp(name, "log-format")
            && strcmp(name, "rootless") && strcmp(name, "criu"))
            hand_over(); /* --debug, --version, --help, unknown */
        if (!value) {
            if (i + 1 >= argc)
                hand_over(); /* "flag needs an argument" */
            value = argv[++i];
        }
        if (!strcmp(name, "root"))
            cl->root = value;
        else if (!strcmp(name, "log-format") && !one_of(value, "text", "json", NULL))
            hand_over();
        else if (!strcmp(name, "rootless") && !one_of(value, "auto", "true", "false"))
            hand_over();
        i++;
    }
    if (i == argc)
        hand_over(); /* usage */
    cl->command = argv[i];
    if (strcmp(cl->command, "state") && strcmp(cl->command, "start")
        && strcmp(cl->command, "kill") && strcmp(cl->command, "delete"))
        hand_over();
    /* the command's options and positionals, in any order; "--" ends options */
    for (i++; i < argc; i++) {
        const char *arg = argv[i];
        int set;

        if (!strcmp(arg, "--")) {
            for (i++; i < argc; i++) {
                if (cl->n_positional == 2)
                    hand_over(); /* "unexpected argument" */
                cl->positional[cl->n_positional++] = argv[i];
            }
            break;
        }
        if (arg[0] == '-' && arg[1] != '\0') {
            /* -a, -f: short names are looked up as they are */
            const char *short_name = NULL;
            if (arg[1] != '-' && (arg[2] == '\0' || arg[2] == '=')) {
                short_name = arg + 1;
                value = arg[2] == '=' ? arg + 3 : NULL;
                name = NULL;
            } else {
                name = option_name(arg, buf, sizeof buf, &value);
                if (!name)
                    hand_over();
            }
            set = flag_value(value);
            if (set < 0)
                hand_over();
            if (!strcmp(cl->command, "delete")
                && ((short_name && *short_name == 'f') || (name && !strcmp(name, "force"))))
                cl->force = set;
            else if (!strcmp(cl->command, "kill")
                     && ((short_name && *short_name == 'a') || (name && !strcmp(name, "all")))) {
                if (set)
                    hand_over(); /* kill --all: every process of the container */
            } else
                hand_over(); /* -h/--help, or "flag provided but not defined" */
            continue;
        }
        if (cl->n_positional == 2)
            hand_over();
        cl->positional[cl->n_positional++] = arg;
    }
    if (cl->n_positional == 0)
        hand_over(); /* "requires a container id" */
    if (cl->n_positional == 2 && strcmp(cl->command, "kill"))
        hand_over();
}

/* state.check_id: [A-Za-z0-9_+.-]+, never . or .., at most 1024 chars */
static int valid_id(const char *id)
{
    size_t len = strlen(id);

    if (len == 0 || len > 1024 || !strcmp(id, ".") || !strcmp(id, ".."))
        return 0;
    for (; *id; id++) {
        char c = *id;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '+' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- signals */

/* signals.py's table (x/sys/unix signalList for Linux), without "SIG" */
static const char *const signal_names[32] = {
    NULL, "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1",
    "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP",
    "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
};

/* signals.parse_signal; 0 for what it refuses (Python words the refusal). */
static int parse_signal(const char *text)
{
    const char *p = text, *rest;
    unsigned long long n;
    int ok, i;

    /* strconv.Atoi syntax: an optional sign, then ASCII digits */
    if (*p == '+' || *p == '-')
        p++;
    n = parse_digits(p, 1000, &ok);
    if (ok)
        return text[0] != '-' && n >= 1 && n <= SIGRTMAX_KERNEL ? (int)n : 0;
    /* text.upper(), "SIG" prefixed if missing: compare without the prefix,
     * ignoring ASCII case; non-ASCII goes to Python's Unicode upper() */
    for (p = text; *p; p++)
        if ((unsigned char)*p >= 0x80)
            return 0;
    rest = strncasecmp(text, "SIG", 3) == 0 ? text + 3 : text;
    for (i = 1; i < 32; i++)
        if (!strcasecmp(rest, signal_names[i]))
            return i;
    /* _realtime: RTMIN, RTMAX, RTMIN+n, RTMAX-n, kept within RTMIN..RTMAX */
    for (i = 0; i < 2; i++) {
        long base = i == 0 ? SIGRTMIN_GLIBC : SIGRTMAX_KERNEL;
        const char *r;
        long number;

        if (strncasecmp(rest, i == 0 ? "RTMIN" : "RTMAX", 5) != 0)
            continue;
        r = rest + 5;
        if (*r == '\0')
            return (int)base;
        if (*r != '+' && *r != '-')
            return 0;
        n = parse_digits(r + 1, 1000, &ok);
        if (!ok)
            return 0;
        number = *r == '+' ? base + (long)n : base - (long)n;
        return number >= SIGRTMIN_GLIBC && number <= SIGRTMAX_KERNEL ? (int)number : 0;
    }
    return 0;
}

/* ---------------------------------------------------------- the fast file */

/* state._fast_text: "ocipy-fast 1", then pid, start, freezer (path or
 * "-"), python (1: the operation needs Python), cgroup (dirs, deepest first,
 * space separated, maybe none). */
struct fast {
    long pid;
    unsigned long long start;
    const char *freezer; /* NULL for "-" */
    int python;
    char *cgroup;
};

static char fast_buf[65536];

static int load_fast(int dirfd, struct fast *f)
{
    char *line, *next, *value;
    int seen = 0, ok;

    if (read_file_at(dirfd, "fast", fast_buf, sizeof fast_buf) < 0)
        return -1;
    for (line = fast_buf; *line; line = next) {
        next = strchr(line, '\n');
        if (!next)
            return -1; /* every line ends with \n: a short file is not ours */
        *next++ = '\0';
        if (line == fast_buf) {
            if (strcmp(line, FAST_MAGIC) != 0)
                return -1; /* another version: Python knows what to do */
            continue;
        }
        value = strchr(line, ' ');
        if (value)
            *value++ = '\0';
        else
            value = line + strlen(line);
        if (!strcmp(line, "pid")) {
            f->pid = (long)parse_digits(value, INT_MAX, &ok);
            seen |= ok << 0;
        } else if (!strcmp(line, "start")) {
            f->start = parse_digits(value, ULLONG_MAX / 10 - 9, &ok);
            seen |= ok << 1;
        } else if (!strcmp(line, "freezer")) {
            f->freezer = strcmp(value, "-") ? value : NULL;
            seen |= (*value != '\0') << 2;
        } else if (!strcmp(line, "python")) {
            f->python = value[0] - '0';
            seen |= (value[1] == '\0' && (f->python == 0 || f->python == 1)) << 3;
        } else if (!strcmp(line, "cgroup")) {
            f->cgroup = value;
            seen |= 1 << 4;
        } /* other keys: a newer Python's, harmless to us */
    }
    return seen == 0x1f && line != fast_buf ? 0 : -1;
}

/* --------------------------------------------------------------- status */

enum status { CREATED, RUNNING, PAUSED, STOPPED };
static const char *const status_names[] = {"created", "running", "paused", "stopped"};

/* state.init_alive: /proc/<pid>/stat field 22 is the start time recorded
 * at create, and the state letter is not Z or X.  1 alive, 0 not, -1 an
 * error Python would not swallow either (proc_start_time catches only
 * FileNotFoundError and ProcessLookupError). */
static int init_alive(const struct fast *f)
{
    char path[64], buf[4096], *p, *field[20];
    ssize_t n;
    int fd, i, ok;
    unsigned long long start;

    if (f->pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", f->pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : -1;
    n = read_retry(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return errno == ESRCH ? 0 : -1;
    buf[n] = '\0';
    /* comm may hold spaces and parentheses: split after the last ')' */
    p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    for (i = 0; i < 20; i++) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (!*p)
            return -1;
        field[i] = p;
        while (*p && *p != ' ' && *p != '\n')
            p++;
        if (*p)
            *p++ = '\0';
    }
    start = parse_digits(field[19], ULLONG_MAX / 10 - 9, &ok);
    if (!ok)
        return -1;
    return start == f->start && !strchr("ZX", field[0][0]);
}

/* str.isspace() within ASCII */
static int is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* state._frozen: the freezer file, stripped, is FROZEN, FREEZING or 1; a
 * file that cannot be read is not frozen.  -1: odd content, ask Python. */
static int frozen(const char *freezer)
{
    char buf[256];
    int fd = open(freezer, O_RDONLY | O_CLOEXEC);
    ssize_t n, used = 0;
    char *start, *end;

    if (fd < 0)
        return 0;
    while ((n = read_retry(fd, buf + used, sizeof buf - 1 - (size_t)used)) > 0)
        if ((used += n) == (ssize_t)sizeof buf - 1)
            break;
    close(fd);
    if (n < 0)
        return 0;
    if (used == (ssize_t)sizeof buf - 1)
        return -1;
    if (memchr(buf, '\0', (size_t)used))
        return -1;
    buf[used] = '\0';
    /* str.strip(): ASCII whitespace and \x1c-\x1f; non-ASCII is Python's */
    for (start = buf; *start; start++)
        if ((unsigned char)*start >= 0x80)
            return -1;
    for (start = buf; is_space(*start); start++)
        ;
    for (end = buf + used; end > start && is_space(end[-1]); end--)
        ;
    *end = '\0';
    return !strcmp(start, "FROZEN") || !strcmp(start, "FREEZING") || !strcmp(start, "1");
}

/* state.status() for a container past `creating` (the fast file exists only
 * then); the order of the checks is Python's. */
static enum status container_status(int dirfd, const struct fast *f)
{
    struct stat sb;
    int alive = init_alive(f), paused;

    if (alive < 0)
        hand_over();
    if (!alive)
        return STOPPED;
    if (fstatat(dirfd, "exec.fifo", &sb, 0) == 0) /* os.path.exists follows links */
        return CREATED;
    if (f->freezer) {
        paused = frozen(f->freezer);
        if (paused < 0)
            hand_over();
        if (paused)
            return PAUSED;
    }
    return RUNNING;
}

/* ---------------------------------------------------------- operations */

static char big_buf[1 << 20]; /* state.load reads at most 1 MiB too */

/* container.state: print the pre-rendered state.<status> verbatim */
static int do_state(int dirfd, const struct fast *f)
{
    char name[32];
    ssize_t len;

    snprintf(name, sizeof name, "state.%s", status_names[container_status(dirfd, f)]);
    len = read_file_at(dirfd, name, big_buf, sizeof big_buf);
    if (len < 0)
        hand_over();
    return write_all(1, big_buf, (size_t)len) < 0 ? 1 : 0;
}

/* container.kill + _signal_init: through a pidfd, with the start time
 * checked again after opening it, so a recycled pid never gets the signal. */
static int do_kill(int dirfd, const struct fast *f, int sig)
{
    int pidfd, rc;

    if (container_status(dirfd, f) == STOPPED)
        hand_over(); /* "container not running" */
    pidfd = (int)syscall(SYS_pidfd_open, (pid_t)f->pid, 0);
    if (pidfd < 0)
        hand_over();
    if (init_alive(f) != 1) {
        close(pidfd);
        hand_over();
    }
    rc = (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    close(pidfd);
    if (rc < 0)
        hand_over();
    return 0;
}

/* For container._start_error_from_frontend: the bytes the init sent after
 * the releasing byte (an error record), or nothing when it died before
 * releasing.  Written like state._write_atomic: temp file, then rename. */
static void __attribute__((noreturn)) start_error(int dirfd, const char *data, size_t len)
{
    int fd = openat(dirfd, ".start.error.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd >= 0) {
        if (write_all(fd, data, len) < 0) {
            close(fd);
            hand_over();
        }
        close(fd);
        renameat(dirfd, ".start.error.tmp", dirfd, "start.error");
    }
    hand_over();
}

/* container.start: open the fifo, the first byte releases the init, then
 * read until EOF -- the fifo is close-on-exec in the init, so EOF means
 * execve succeeded or the init died; more bytes are its error record. */
static int do_start(int dirfd, const struct fast *f)
{
    static char received[65536]; /* an oci_msg is 496 bytes */
    char scratch[4096];
    size_t used = 0;
    int released = 0, fd;
    struct pollfd pfd;
    struct stat sb;

    if (f->python)
        hand_over(); /* poststart hooks */
    /* a start.error left behind is Python's to report */
    if (fstatat(dirfd, "start.error", &sb, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
        hand_over();
    if (container_status(dirfd, f) != CREATED)
        hand_over();
    fd = openat(dirfd, "exec.fifo", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        hand_over(); /* nothing has been read: Python can start over */
    pfd.fd = fd;
    pfd.events = POLLIN;
    for (;;) {
        ssize_t n;
        int ready = poll(&pfd, 1, POLL_MS);

        if (ready < 0) {
            if (errno == EINTR)
                continue;
            if (!released) {
                close(fd);
                hand_over();
            }
            start_error(dirfd, "", 0);
        }
        if (ready == 0) {
            int alive = init_alive(f);
            if (alive < 0 && !released) {
                close(fd);
                hand_over();
            }
            if (alive != 1)
                /* Python's loop says "its init process exited before it
                 * was started", and so does an empty start.error */
                start_error(dirfd, "", 0);
            continue;
        }
        if (used < sizeof received)
            n = read_retry(fd, received + used, sizeof received - used);
        else
            n = read_retry(fd, scratch, sizeof scratch); /* past any record: dropped */
        if (n < 0) {
            if (errno == EAGAIN)
                continue;
            start_error(dirfd, "", 0);
        }
        if (n == 0)
            break;
        if (used < sizeof received)
            used += (size_t)n;
        if (!released) {
            released = 1;
            /* from now on `state` says running: the fifo is the marker */
            if (unlinkat(dirfd, "exec.fifo", 0) < 0 && errno != ENOENT)
                start_error(dirfd, "", 0);
        }
    }
    close(fd);
    if (!released)
        start_error(dirfd, "", 0);
    if (used > 1)
        start_error(dirfd, received + 1, used - 1);
    return 0;
}

#define MAX_CGROUP_DIRS 256

/* A listed dir that holds another listed dir is a parent the container's
 * create made (Manager.created lists the leaves and the parents it made). */
static int is_created_parent(char **dirs, int n, const char *dir)
{
    size_t len = strlen(dir);
    int i;

    for (i = 0; i < n; i++)
        if (!strncmp(dirs[i], dir, len) && dirs[i][len] == '/')
            return 1;
    return 0;
}

/* container.delete's cgroup part for a stopped container: Manager.destroy.
 * Anything Python would retry or word (a leaf still busy with exiting
 * processes or with cgroups of its own below, any other error) hands over
 * before a state file is gone, so the state survives for Python. */
static void remove_cgroups(char *line)
{
    static char *dirs[MAX_CGROUP_DIRS];
    char *dir, *save = NULL;
    int n = 0, i;

    for (dir = strtok_r(line, " ", &save); dir; dir = strtok_r(NULL, " ", &save)) {
        if (n == MAX_CGROUP_DIRS)
            hand_over();
        dirs[n++] = dir;
    }
    /* deepest first, as listed; ENOENT: already gone (a hierarchy mounted
     * twice, or a delete that failed half-way) */
    for (i = 0; i < n; i++) {
        if (rmdir(dirs[i]) == 0 || errno == ENOENT)
            continue;
        /* Manager._remove: a parent it made that another container still
         * uses stays */
        if ((errno == EBUSY || errno == ENOTEMPTY) && is_created_parent(dirs, n, dirs[i]))
            continue;
        hand_over();
    }
}

/* 1 when the init is the first process of a pid namespace of its own
 * (NSpid in /proc/<pid>/status ends in 1, after our pid for it): killing it
 * kills every process of that namespace, and the kernel reaps them all
 * before the init itself becomes a zombie. */
static int init_owns_pid_namespace(const struct fast *f)
{
    char path[64], buf[4096], *line, *last;

    snprintf(path, sizeof path, "/proc/%ld/status", f->pid);
    if (read_file_at(AT_FDCWD, path, buf, sizeof buf) <= 0)
        return 0; /* gone, or more than we read: Python's */
    line = strstr(buf, "\nNSpid:");
    if (!line)
        return 0;
    line += 8;
    line[strcspn(line, "\n")] = '\0';
    while (*line == '\t' || *line == ' ')
        line++;
    last = strrchr(line, '\t');
    return last && last > line && !strcmp(last + 1, "1");
}

/* container.delete --force of a created or running container, the common
 * case only: the init heads a pid namespace of its own, so SIGKILL to it
 * ends the whole container.  It goes through a pidfd opened before the
 * start time is checked again (a recycled pid never gets it), and the
 * pidfd says when the init has exited.  Anything else -- a paused
 * container, no pid namespace of its own (Python kills every process in
 * the cgroup), an init that does not die within _KILL_WAIT_S -- is
 * Python's, as are the leftovers the stopped path finds. */
static void kill_for_delete(const struct fast *f, enum status status)
{
    struct pollfd pfd;
    int pidfd, rc;

    if (status != CREATED && status != RUNNING)
        hand_over();
    if (!init_owns_pid_namespace(f))
        hand_over();
    pidfd = (int)syscall(SYS_pidfd_open, (pid_t)f->pid, 0);
    if (pidfd < 0)
        hand_over();
    if (init_alive(f) != 1 || syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0) {
        close(pidfd);
        hand_over();
    }
    pfd.fd = pidfd;
    pfd.events = POLLIN;
    do
        rc = poll(&pfd, 1, KILL_WAIT_MS);
    while (rc < 0 && errno == EINTR);
    close(pidfd);
    if (rc <= 0)
        hand_over();
}

/* container.delete of a stopped container (or, with --force, one killed
 * by kill_for_delete first), then state.remove_dir */
static int do_delete(int dirfd, const char *path, const struct fast *f, int force)
{
    static char dents[32768];
    enum status status;

    if (f->python)
        hand_over(); /* hooks, or a host mount tree to detach */
    if (!f->cgroup[0])
        hand_over(); /* no cgroup dir of ours: Python looks for leftovers */
    status = container_status(dirfd, f);
    if (status != STOPPED) {
        if (!force)
            hand_over(); /* Python refuses, in its words */
        kill_for_delete(f, status);
        if (container_status(dirfd, f) != STOPPED)
            hand_over();
    }
    remove_cgroups(f->cgroup);
    /* state.json first: from now on every reader says "does not exist" */
    if (unlinkat(dirfd, "state.json", 0) < 0 && errno != ENOENT)
        hand_over();
    for (;;) {
        long n, off;
        int removed = 0;

        if (lseek(dirfd, 0, SEEK_SET) < 0)
            hand_over();
        while ((n = syscall(SYS_getdents64, dirfd, dents, sizeof dents)) > 0) {
            for (off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(dents + off);
                off += d->d_reclen;
                if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
                    continue;
                /* ENOENT: a concurrent delete got there first */
                if (unlinkat(dirfd, d->d_name, 0) < 0 && errno != ENOENT)
                    hand_over();
                removed = 1;
            }
        }
        if (n < 0)
            hand_over();
        if (!removed)
            break;
    }
    if (rmdir(path) < 0 && errno != ENOENT)
        hand_over();
    return 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    static char path[PATH_MAX + 1100];
    const char *no_fast = getenv("OCIPY_NO_FAST");
    struct cmdline cl = {0};
    struct fast f = {0};
    struct stat sb;
    int dirfd, sig = 0;
    size_t root_len, id_len;

    g_argv = argv;
    if (no_fast && *no_fast && strcmp(no_fast, "0") != 0)
        hand_over();
    parse_cmdline(argc, argv, &cl);
    if (!valid_id(cl.positional[0]) || cl.root[0] == '\0')
        hand_over();
    if (!strcmp(cl.command, "kill")) {
        /* cli: parse_signal(args.signal or "TERM") */
        sig = parse_signal(cl.n_positional == 2 && cl.positional[1][0] ? cl.positional[1] : "TERM");
        if (!sig)
            hand_over();
    }
    /* os.path.join(root, id) */
    root_len = strlen(cl.root);
    id_len = strlen(cl.positional[0]);
    if (root_len + id_len + 2 > sizeof path)
        hand_over();
    memcpy(path, cl.root, root_len);
    if (path[root_len - 1] != '/')
        path[root_len++] = '/';
    memcpy(path + root_len, cl.positional[0], id_len + 1);
    dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        hand_over(); /* "container ... does not exist", or stranger */
    /* state.load opens state.json: without it the container does not exist
     * for Python, whatever else is left in the dir */
    if (fstatat(dirfd, "state.json", &sb, 0) < 0)
        hand_over();
    if (load_fast(dirfd, &f) < 0)
        hand_over(); /* still creating, or a format we do not know */
    if (!strcmp(cl.command, "state"))
        return do_state(dirfd, &f);
    if (!strcmp(cl.command, "kill"))
        return do_kill(dirfd, &f, sig);
    if (!strcmp(cl.command, "start"))
        return do_start(dirfd, &f);
    return do_delete(dirfd, path, &f, cl.force);
}
