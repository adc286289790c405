"""Console entry point: `ocipy ...` and `python -m ocipy ...`."""
import sys


def main() -> None:
    """Run the CLI and leave without the interpreter's finalization.

    Tearing down every module and object at exit costs a `create` ~4 ms of
    wall and CPU time for nothing: everything ocipy writes goes through raw fds
    (state files, the log) except stdout/stderr, which are flushed here.
    An exception other than SystemExit takes the normal path (traceback).

    The cycle collector is off meanwhile: a command lasts milliseconds and
    leaves through _exit, while the collections its imports and plan set off
    cost a create ~0.4 ms.  A command that goes on to wait for a container
    (a foreground run or exec, events) turns it back on (ocipy._resume_gc).
    """
    import gc

    import ocipy

    if gc.isenabled():
        gc.disable()
        ocipy._gc_paused = True
    from ocipy import _os as os  # os without importing os (see _os.py)
    from ocipy.cli import main as cli_main

    try:
        code = cli_main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)  # sys.exit("text") semantics
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = 120  # what the interpreter exits with when its final flush fails
    os._exit(code & 0xFF)


if __name__ == "__main__":
    main()
