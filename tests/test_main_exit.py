"""The entry point leaves with os._exit: codes, messages and output survive."""
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(argv_code: str, *args: str) -> subprocess.CompletedProcess:
    # a stand-in for the CLI: what ocipy.cli.main returns or raises
    script = (f"import sys; sys.path.insert(0, {SRC!r}); import ocipy.cli as cli\n"
              f"def fake(argv):\n{argv_code}\n"
              "cli.main = fake\n"
              "from ocipy.__main__ import main; main()\n")
    return subprocess.run([sys.executable, "-I", "-c", script, *args],
                          capture_output=True, text=True, timeout=60)


def test_the_returned_code_is_the_exit_status_and_buffered_output_is_flushed():
    proc = _run("    sys.stdout.write('partial line without newline')\n    return 3")
    assert proc.returncode == 3
    assert proc.stdout == "partial line without newline"


def test_system_exit_codes_and_messages_keep_their_meaning():
    assert _run("    raise SystemExit(None)").returncode == 0
    assert _run("    raise SystemExit(256 + 7)").returncode == 7
    proc = _run("    raise SystemExit('ocipy: went wrong')")
    assert (proc.returncode, proc.stderr) == (1, "ocipy: went wrong\n")


def test_a_failed_final_flush_is_exit_120_as_the_interpreter_does():
    import os

    script = (f"import sys; sys.path.insert(0, {SRC!r}); import ocipy.cli as cli\n"
              "cli.main = lambda argv: sys.stdout.write('buffered') and 0\n"
              "from ocipy.__main__ import main; main()\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the final flush gets EPIPE
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", script], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 120, proc.stderr
