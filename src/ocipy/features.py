"""The runtime-spec Features structure ``ocipy features`` prints.

runtime-spec features.md / features-linux.md; laid out like runc's
features.go.  Each capability flag below must tell the truth about this
build: flip it in the same change that makes the feature work.
"""

from __future__ import annotations


from ocipy import OCI_VERSION, __version__, host
from ocipy.capabilities import CAPABILITIES
from ocipy.mountopts import known_mount_options

OCI_VERSION_MIN = "1.0.0"

# config.md "POSIX-platform Hooks", in lifecycle order.
HOOKS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

# config-linux.md namespace types the planner handles, "time" (runtime-spec
# 1.2) included: runc 1.1 does not have it.
NAMESPACES = ("cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts")

CGROUP_V1 = True
CGROUP_V2 = True
CGROUP_SYSTEMD = True  # cgroups/systemd.py (the system manager; no --user one)
CGROUP_SYSTEMD_USER = False
CGROUP_RDMA = False

INTEL_RDT_ENABLED = False
IDMAP_MOUNTS_ENABLED = False



def _seccomp() -> dict:
    """What this build and this kernel really support, probed (ocipy.seccomp)."""
    from ocipy.errors import OcipyError

    try:
        from ocipy.seccomp import supported

        return supported()
    except (ImportError, OcipyError):
        return {"enabled": False}


def features() -> dict:
    """The Features structure, keys in runc's order.

    AppArmor and SELinux are reported enabled only where the host has them
    (ocipy.host's probes, which `ocipy check` reports too): ocipy writes the LSM attributes but
    cannot do so without the LSM.  features-linux.md calls the field
    "irrelevant to the availability on the host"; runc reports true always.
    """
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": known_mount_options(),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            # All recognised names, "including capabilities that might not be
            # supported by the host" (features-linux.md); caps_to_mask warns
            # about and skips the ones above cap_last_cap.
            "capabilities": list(CAPABILITIES),
            "cgroup": {
                "v1": CGROUP_V1,
                "v2": CGROUP_V2,
                "systemd": CGROUP_SYSTEMD,
                "systemdUser": CGROUP_SYSTEMD_USER,
                "rdma": CGROUP_RDMA,
            },
            "seccomp": _seccomp(),
            # the probes `ocipy check` reports (ocipy.host)
            "apparmor": {"enabled": host.apparmor_enabled()},
            "selinux": {"enabled": host.selinux_enabled()},
            "intelRdt": {"enabled": INTEL_RDT_ENABLED},
            "mountExtensions": {"idmap": {"enabled": IDMAP_MOUNTS_ENABLED}},
        },
        "annotations": {"io.github.ocipy.version": __version__},
    }
