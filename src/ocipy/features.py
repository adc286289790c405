"""The runtime-spec Features structure ``ocipy features`` prints.

runtime-spec features.md / features-linux.md; laid out like runc's
features.go.  Each capability flag below must tell the truth about this
build: flip it in the same change that makes the feature work.
"""

from __future__ import annotations

import os

from ocipy import OCI_VERSION, __version__
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
CGROUP_SYSTEMD = False
CGROUP_SYSTEMD_USER = False
CGROUP_RDMA = False

SECCOMP_ENABLED = False
SECCOMP_ACTIONS = (
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
)
SECCOMP_OPERATORS = (
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
)
SECCOMP_ARCHS = (
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
)
# config-linux.md seccomp "flags".  supportedFlags depends on the kernel and
# libseccomp; whoever lands seccomp fills it from a probe.
SECCOMP_KNOWN_FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)
SECCOMP_SUPPORTED_FLAGS: tuple[str, ...] = ()

INTEL_RDT_ENABLED = False
IDMAP_MOUNTS_ENABLED = False

_APPARMOR_FS = "/sys/kernel/security/apparmor"
_SELINUX_FS = "/sys/fs/selinux"


def _seccomp() -> dict:
    if not SECCOMP_ENABLED:
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": list(SECCOMP_ACTIONS),
        "operators": list(SECCOMP_OPERATORS),
        "archs": list(SECCOMP_ARCHS),
        "knownFlags": list(SECCOMP_KNOWN_FLAGS),
        "supportedFlags": list(SECCOMP_SUPPORTED_FLAGS),
    }


def features() -> dict:
    """The Features structure, keys in runc's order.

    AppArmor and SELinux are reported enabled only where the host has them
    (their securityfs/selinuxfs exist): ocipy writes the LSM attributes but
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
            "apparmor": {"enabled": os.path.isdir(_APPARMOR_FS)},
            "selinux": {"enabled": os.path.isdir(_SELINUX_FS)},
            "intelRdt": {"enabled": INTEL_RDT_ENABLED},
            "mountExtensions": {"idmap": {"enabled": IDMAP_MOUNTS_ENABLED}},
        },
        "annotations": {"io.github.ocipy.version": __version__},
    }
