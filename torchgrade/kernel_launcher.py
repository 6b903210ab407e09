"""Start an ipykernel after locking this process down; the first code of every kernel.

Run as a script in isolated mode (``python -I kernel_launcher.py -f CONNECTION``), so
neither the grader's folders nor PYTHON* variables reach the kernel's import path.
In the sandbox it is bound read-only at /run/torchgrade/kernel_launcher.py. Settings
arrive as JSON in TORCHGRADE_LIMITS (nothing secret: /proc/self/environ keeps the
initial environment for anyone in the process to read). In order, before any student
code can run:

1. the secret the probe signs snapshots with is read from stdin (a pipe the grader
   writes once and closes), and stdin is pointed at /dev/null;
2. resource limits are applied with ``resource.setrlimit``: address space, CPU seconds
   (soft below hard: SIGXCPU first, so the grader can tell why the kernel died), file
   size, open files, processes, and no core dumps;
3. when the grader runs as root, the process drops to the kernel's own unprivileged
   uid and gid with no supplementary groups, and checks that root cannot be regained;
4. no_new_privs is set, so no setuid program can give privileges back, and a seccomp filter refuses the
   kernel keyring calls (a uid's keyring outlives the kernel; see deny_keyrings);
5. the secret is left in ``sys._torchgrade_secret`` for the probe, which takes it out.
"""

import json
import os
import sys

# CPU seconds allowed for starting the kernel (ipykernel, and torch imported by the probe) on top of the
# student's budget: start-up must not eat that budget. The probe lowers the limit to "CPU used so far +
# budget" as soon as it is installed, before any student code runs.
STARTUP_CPU_SECONDS = 60


def read_secret() -> str:
    data = b""
    while not data.endswith(b"\n") and len(data) < 256:
        chunk = os.read(0, 256)
        if not chunk:
            break
        data += chunk
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return data.decode("ascii", "replace").strip()


def apply_limits(limits: dict) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: nothing to apply, the grader warns about it
        return
    names = {
        "address_space": resource.RLIMIT_AS,
        "cpu_seconds": resource.RLIMIT_CPU,
        "file_size": resource.RLIMIT_FSIZE,
        "open_files": resource.RLIMIT_NOFILE,
        "processes": getattr(resource, "RLIMIT_NPROC", None),
        "core": resource.RLIMIT_CORE,
    }
    for key, value in limits.items():
        which = names.get(key)
        if which is None or value is None:
            continue
        soft, hard = (value, value) if isinstance(value, int) else value
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY and os.geteuid() != 0:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise SystemExit("torchgrade: could not drop root privileges")


def no_new_privileges() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    except (OSError, AttributeError):
        pass


# Linux's key-retention service keeps a keyring per uid until the machine reboots, and a run's uid is leased to later
# runs: a key left there by one submission could be read by another. Each engine's kernel or run is refused the
# three system calls (EPERM, as Docker's default profile does), for each ABI a process of this machine may call.
KEYRING_CALLS = {
    0xC000003E: ((248, 249, 250), 0xBFFFFFFF),  # x86_64 (x32 calls carry bit 30: masked off): add_key, request_key, keyctl
    0x40000003: ((286, 287, 288), 0xFFFFFFFF),  # i386, reachable from a 64-bit process through int 0x80
    0xC00000B7: ((217, 218, 219), 0xFFFFFFFF),  # aarch64
    0x40000028: ((309, 310, 311), 0xFFFFFFFF),  # arm (32-bit EABI), reachable from aarch64 where compat is built in
    0xC00000F3: ((217, 218, 219), 0xFFFFFFFF),  # riscv64
    0xC0000015: ((269, 270, 271), 0xFFFFFFFF),  # ppc64le
    0x80000016: ((278, 279, 280), 0xFFFFFFFF),  # s390x
}


def keyring_filter() -> bytes:
    """A classic BPF program for seccomp: EPERM for the keyring calls of the calling ABI, every other call allowed."""
    import struct

    load, jeq, and_, ret = 0x20, 0x15, 0x54, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    program = [(load, 0, 0, 4)]  # seccomp_data.arch
    for arch, (numbers, mask) in KEYRING_CALLS.items():
        body = [(load, 0, 0, 0), (and_, 0, 0, mask)] + [(jeq, "deny", 0, number) for number in numbers] + \
               [(ret, 0, 0, allow)]
        program += [(jeq, 0, len(body), arch)] + body  # not this ABI: over its block, to the next
    program.append((ret, 0, 0, allow))  # an ABI not listed
    program.append((ret, 0, 0, deny))
    deny_at = len(program) - 1
    return b"".join(struct.pack("=HBBI", code, deny_at - index - 1 if jt == "deny" else jt, jf, k)
                    for index, (code, jt, jf, k) in enumerate(program))


def deny_keyrings() -> None:
    """Install keyring_filter (no_new_privs must be set first). Where seccomp is missing the kernel or run does not
    start (fail closed): the grader then reports that it could not start one."""
    import ctypes

    program = keyring_filter()
    buffer = ctypes.create_string_buffer(program, len(program))

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    fprog = Program(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise SystemExit(f"torchgrade: could not install the seccomp filter ({os.strerror(ctypes.get_errno())})")


def main() -> None:
    settings = json.loads(os.environ.pop("TORCHGRADE_LIMITS", "{}") or "{}")
    secret = read_secret() if settings.get("secret_on_stdin") else ""
    rlimits = dict(settings.get("rlimits", {}))
    if rlimits.get("cpu_seconds") is not None:
        cpu = rlimits["cpu_seconds"]
        soft, hard = (cpu, cpu) if isinstance(cpu, int) else cpu
        rlimits["cpu_seconds"] = [soft + STARTUP_CPU_SECONDS, hard + STARTUP_CPU_SECONDS]
        sys._torchgrade_cpu_budget = (soft, hard)
    apply_limits(rlimits)
    if settings.get("uid") is not None:
        drop_privileges(settings["uid"], settings["gid"])
    if settings.get("no_new_privileges") and sys.platform.startswith("linux"):
        no_new_privileges()
        deny_keyrings()
    sys._torchgrade_secret = secret
    del secret
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != os.path.dirname(os.path.abspath(__file__))]
    main()
