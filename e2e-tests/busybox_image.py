"""Build the busybox test image from a rootfs directory, with no registry.

Two tarballs come out of one rootfs (``bundles/make-rootfs.sh`` builds it from
Debian's busybox-static):

- ``rootfs.tar``: the plain filesystem, for ``podman import`` and
  ``docker import``;
- ``busybox-oci.tar``: an OCI image layout (``oci-layout``, ``index.json``,
  the manifest, the config with ``Cmd ["sh"]`` and one gzipped layer in
  ``blobs/sha256/``), for ``ctr images import``.  The index entry carries the
  ``org.opencontainers.image.ref.name`` annotation (the tag, e.g. ``test``)
  that ``ctr images import --base-name`` turns into the image name.

The archives are deterministic: sorted entries, owner root, fixed mtimes, so
the same rootfs always gives the same digests.

    python3 e2e-tests/busybox_image.py ROOTFS OUTDIR [TAG]
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from pathlib import Path

MTIME = 0  # every entry of every archive; keeps the digests reproducible
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _rootfs_tar(rootfs: Path, out: io.BufferedIOBase) -> None:
    """The rootfs as an uncompressed tar with root-owned entries and fixed mtimes."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted([*dirnames, *filenames]):
                full = Path(dirpath) / name
                info = tar.gettarinfo(str(full), arcname=str(full.relative_to(rootfs)))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = MTIME
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def _blob(blobs: dict[str, bytes], data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


def build(rootfs: Path, outdir: Path, tag: str = "test") -> tuple[Path, Path]:
    """Write ``rootfs.tar`` and ``busybox-oci.tar`` into ``outdir``; return both paths."""
    rootfs, outdir = Path(rootfs), Path(outdir)
    if not (rootfs / "bin" / "busybox").is_file():
        raise FileNotFoundError(f"{rootfs}/bin/busybox missing: "
                                "build it with bundles/make-rootfs.sh")
    outdir.mkdir(parents=True, exist_ok=True)

    layer = io.BytesIO()
    _rootfs_tar(rootfs, layer)
    layer_tar = layer.getvalue()
    rootfs_tar = outdir / "rootfs.tar"
    rootfs_tar.write_bytes(layer_tar)

    blobs: dict[str, bytes] = {}
    layer_gz = gzip.compress(layer_tar, mtime=MTIME)
    layer_digest = _blob(blobs, layer_gz)
    config = {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine,
                                                                     os.uname().machine),
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created_by": "e2e-tests/busybox_image.py (busybox-static)"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = _blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer_gz)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = _blob(blobs, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
            "platform": {"architecture": config["architecture"], "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }

    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index, sort_keys=True).encode()}
    files.update({f"blobs/sha256/{d.split(':', 1)[1]}": data for d, data in blobs.items()})
    oci_tar = outdir / "busybox-oci.tar"
    with tarfile.open(oci_tar, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirname in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(dirname)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), stat.S_IFREG | 0o644, MTIME
            tar.addfile(info, io.BytesIO(files[name]))
    return rootfs_tar, oci_tar


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(f"usage: {sys.argv[0]} ROOTFS OUTDIR [TAG]")
    for path in build(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]):
        print(path)
