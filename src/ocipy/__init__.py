"""ocipy: an OCI runtime written in Python, with a Cython extension for the privileged hot path."""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
