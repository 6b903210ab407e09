"""Start an ipykernel after applying the grader's limits to this process.

Run as a script in isolated mode (``python -I kernel_launcher.py -f CONNECTION``), so
neither the grader's folders nor PYTHON* variables reach the kernel's import path.
Limits arrive as JSON in TORCHGRADE_LIMITS and are applied with ``resource.setrlimit``
before any student code can run; the variable is then removed from the environment.
"""

import json
import os
import sys


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
        resource.setrlimit(which, (soft, hard))


def main() -> None:
    limits = json.loads(os.environ.pop("TORCHGRADE_LIMITS", "{}") or "{}")
    apply_limits(limits)
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != os.path.dirname(os.path.abspath(__file__))]
    main()
