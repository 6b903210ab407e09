"""A forked run's lock-down, as kernel_launcher.py locks a kernel down: part of the warm engine's runtime (see
zygote_runtime.py), bound read-only beside it at /run/torchgrade/ in the sandbox; not imported by the grader."""

import ctypes
import os
import sys

import kernel_launcher  # bound beside this file; its lock-down functions are reused as they are

PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4

libc = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


RESERVED = []


def reserve_like_a_kernel(megabytes):
    """Leave the student the room under RLIMIT_AS that a kernel leaves: a forked run starts with half a kernel's
    address space (no ipykernel threads and their malloc arenas), so the difference is reserved, inaccessible."""
    import mmap

    with open("/proc/self/status") as handle:
        size = next(int(line.split()[1]) for line in handle if line.startswith("VmSize:")) * 1024
    missing = megabytes * 2**20 - size
    if missing > 0:
        RESERVED.append(mmap.mmap(-1, missing, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0x4000),
                                  prot=0))  # PROT_NONE


def lock_down(settings):
    """What kernel_launcher does before a kernel starts, in the same order, with the capabilities a kernel has.

    A kernel in bwrap, or with a uid of its own, has none; one started as root without the sandbox keeps root's
    (kernel_launcher drops none, the grader warns loudly): a run does the same, so both engines let a student do
    the same things. The zygote's own capabilities (kept to isolate runs) never reach a run in the sandbox."""
    limits = dict(settings["rlimits"])
    soft, hard = limits["cpu_seconds"]
    # The run's own start-up (the probe) gets the launcher's allowance; the probe then tightens it.
    limits["cpu_seconds"] = [soft + kernel_launcher.STARTUP_CPU_SECONDS, hard + kernel_launcher.STARTUP_CPU_SECONDS]
    sys._torchgrade_cpu_budget = (soft, hard)
    reserve_like_a_kernel(settings.get("kernel_address_space_mb", 0))
    kernel_launcher.apply_limits(limits)
    drop = settings["sandbox"] or settings.get("uid") is not None
    if drop:  # the bounding set first: dropping it needs CAP_SETPCAP, which the uid change takes away
        for capability in range(64):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: no more
                break
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if settings.get("uid") is not None:
        kernel_launcher.drop_privileges(settings["uid"], settings["gid"])
    if drop:
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
        data = (ctypes.c_uint32 * 6)()
        check(libc.capset(header, data), "capset")
    kernel_launcher.no_new_privileges()
    kernel_launcher.deny_keyrings()
