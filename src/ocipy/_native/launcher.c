/*
 * The Python launcher as a program of its own: .venv/bin/ocipy-py, which the
 * native front-end (frontend.c) execs for everything it does not answer.
 *
 * It is CPython embedded (libpython linked statically) running the same
 * boot code as the script launcher (ocipy/launcher.py, launcher_source):
 * the interpreter is configured as `python -I -S` configures it, then the
 * code puts ocipy's paths on sys.path, installs ocipy._pycfinder and calls
 * ocipy.__main__.main.  What it saves over `#!python -IS` + the script, about
 * 0.5 ms of every Python-path call on the test VM:
 *
 * - the encodings package with its aliases table and the codecs start-up
 *   needs (UTF-8; ASCII for the C locale), and __future__ (which every
 *   ocipy module imports) are frozen into the binary: start-up no longer
 *   lists /usr/lib/python3.11 and its encodings directory and reads their
 *   .pyc files.  They keep their __file__ and __path__ (CPython resolves
 *   frozen modules against the standard library directory), so every other
 *   codec still loads from there;
 * - ocipy/_pycfinder.py is frozen in too (as _ocipy_pycfinder), and the
 *   boot code installs that copy before ocipy is imported, so the package
 *   itself loads through it: no standard path finder for the package or
 *   the finder.  A source changed since the build takes the standard path
 *   (launcher.py, launcher_source);
 * - no #! script: no second program for the kernel to set up and no source
 *   to compile;
 * - ocipy's own modules are built in as static code objects (ocipy_code.c,
 *   written by ocipy/_freeze.py), as the frozen modules above are: the
 *   finder takes a module's code from there, through the frozen modules'
 *   table (its get_code), while the source is the one it was built from, so
 *   nothing is unmarshalled and no .pyc read (~0.8 ms of a create); the
 *   objects of the modules create, run and exec import have a section of
 *   their own, ocipy_code, which populate_data copies in with the rest, and
 *   the others' (ocipy_code_cold) is left to fault in if used;
 * - built with OCIPY_BUILTIN_SPAWN, the spawn extension (spawn.pyx, the
 *   same sources and flags as its .so) is linked in and registered as a
 *   built-in module: `create`, `run` and `exec` do not look it up and
 *   dlopen() it (ocipy._pycfinder hands it to BuiltinImporter while the
 *   .so is the one it was built with; a rebuilt .so is imported instead);
 * - the initialised data (libpython's static objects: types, the deep-frozen
 *   code of the import system, the runtime state) is copied in with one
 *   madvise() before the interpreter starts (populate_data, below), and
 *   pymalloc's first arena comes populated (arena_alloc).
 *
 * launcher_gen.h and ocipy_code.c are written at build time (launcher.py,
 * embedded_sources): OCIPY_EXECUTABLE (sys.executable: the virtualenv's
 * python, as for the script), OCIPY_BOOT (`import _ocipy_boot`) and
 * ocipy_frozen[], the frozen modules, compiled by the interpreter whose
 * libpython is linked here and written as static code objects
 * (ocipy/_freeze.py): the start-up modules above, the boot code (so
 * start-up compiles one line, not the boot code: ~0.2 ms), and ocipy's.
 * Where this cannot be built, launcher.py installs the script instead.  Both
 * are copies of the Python installed at build time: the Makefile rebuilds
 * the launcher when that static libpython changes (a Python upgrade).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <sys/mman.h>

#include "launcher_gen.h"

#if OCIPY_PY_HEXVERSION != PY_VERSION_HEX
#error "launcher_gen.h was written by another Python than these headers are of"
#endif

#ifdef OCIPY_BUILTIN_SPAWN
PyMODINIT_FUNC PyInit_spawn(void);
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* The linker's bounds of .data (glibc's crt1 and ld define them) */
extern char __data_start[], _edata[];

/*
 * Interpreter start-up writes to nearly every page of the program's
 * initialised data (libpython's ~1.1 MB: reference counts and hashes of its
 * static objects, the interned strings of the deep-frozen modules; a create
 * writes 250 of its 278 pages) and of the hot modules' static code (229 of
 * 233 pages), one copy-on-write page fault each.  MADV_POPULATE_WRITE makes
 * the same private copies in one call per range, for about half the cost
 * per page (measured on the test VM: -0.35 ms for `ocipy-py --version` and
 * -0.2 ms for a create when it was libpython's data alone; the hot code's
 * -0.67 ms).  .bss is left alone: start-up touches little of it.  Only a
 * speed-up: a kernel without it (EINVAL) or any other failure leaves the
 * pages to fault in as before.
 */
static void populate(uintptr_t start, uintptr_t end)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

    start = (start + page - 1) & ~(page - 1);
    end = (end + page - 1) & ~(page - 1);
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

/* The static code of the modules no create, run or exec imports
 * (ocipy/_freeze.py, COLD_SECTION): left out, as a create touches none of
 * its ~143 pages (copying them in too cost a create ~0.7 ms).  The linker's
 * bounds of the section; none in a launcher without it. */
extern char __start_ocipy_code_cold[] __attribute__((weak));
extern char __stop_ocipy_code_cold[] __attribute__((weak));

static void populate_data(void)
{
    uintptr_t start = (uintptr_t)__data_start, end = (uintptr_t)_edata;
    uintptr_t cold = (uintptr_t)__start_ocipy_code_cold;
    uintptr_t cold_end = (uintptr_t)__stop_ocipy_code_cold;

    if (start < cold && cold <= cold_end && cold_end <= end) {
        populate(start, cold);
        populate(cold_end, end);
    } else {
        populate(start, end);
    }
}

/*
 * pymalloc's arenas (1 MiB each, where objects of up to 512 bytes live), as
 * CPython maps them (_PyObject_ArenaMmap), except that the first two maps
 * are populated in the same call: the first arena, which start-up fills,
 * and the first 16 KB chunk of the frame stack (CPython takes those from
 * this allocator too); ~250 page faults otherwise (create -0.07 to -0.17
 * ms over three A/B runs of 80-100 rounds, peak RSS +0.15 MiB).  Later
 * maps fault in as before: a create fills 11-14 of the second arena's 64
 * pools, and populating its first quarter measured no faster.  Maps are
 * taken and given back under the interpreter lock: the count needs no
 * other.
 */
#define OCIPY_POPULATED_ARENAS 2
static int arenas_mapped;

static void *arena_alloc(void *ctx, size_t size)
{
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    (void)ctx;
    if (arenas_mapped < OCIPY_POPULATED_ARENAS) {
        arenas_mapped++;
        flags |= MAP_POPULATE;
    }
    void *arena = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    return arena == MAP_FAILED ? NULL : arena;
}

static void arena_free(void *ctx, void *arena, size_t size)
{
    (void)ctx;
    munmap(arena, size);
}

static void __attribute__((noreturn)) fail(PyStatus status, PyConfig *config)
{
    if (config)
        PyConfig_Clear(config);
    Py_ExitStatusException(status);
}

int main(int argc, char **argv)
{
    PyPreConfig preconfig;
    PyConfig config;
    PyStatus status;

    populate_data();
    /* before the first arena is mapped (pre-initialisation may allocate) */
    PyObjectArenaAllocator arenas = {NULL, arena_alloc, arena_free};
    PyObject_SetArenaAllocator(&arenas);
    PyImport_FrozenModules = ocipy_frozen;
#ifdef OCIPY_BUILTIN_SPAWN
    if (PyImport_AppendInittab("ocipy._native.spawn", PyInit_spawn) < 0)
        return 1;
#endif

    /* `python -I`: the locale and UTF-8 mode as python3 chooses them, no
     * environment variable read */
    PyPreConfig_InitPythonConfig(&preconfig);
    preconfig.parse_argv = 0;
    preconfig.isolated = 1;
    preconfig.use_environment = 0;
    status = Py_PreInitialize(&preconfig);
    if (PyStatus_Exception(status))
        fail(status, NULL);

    /* `-I -S`, the argv as given (sys.argv[1:] is the command line), and
     * the boot code run from `-c` (Py_RunMain: exit status, SystemExit and
     * KeyboardInterrupt as python3 handles them) */
    PyConfig_InitPythonConfig(&config);
    config.isolated = 1;
    config.use_environment = 0;
    config.user_site_directory = 0;
    config.safe_path = 1;
    config.site_import = 0;
    config.parse_argv = 0;
    status = PyConfig_SetString(&config, &config.program_name, OCIPY_EXECUTABLE);
    if (PyStatus_Exception(status))
        fail(status, &config);
    status = PyConfig_SetString(&config, &config.executable, OCIPY_EXECUTABLE);
    if (PyStatus_Exception(status))
        fail(status, &config);
    status = PyConfig_SetString(&config, &config.run_command, OCIPY_BOOT);
    if (PyStatus_Exception(status))
        fail(status, &config);
    status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (PyStatus_Exception(status))
        fail(status, &config);
    status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status))
        fail(status, NULL);
    return Py_RunMain();
}
