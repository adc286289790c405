"""Console entry point: `ocipy ...` and `python -m ocipy ...`."""
import sys


def main() -> None:
    from ocipy.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
