"""Write ``constraints.txt``: the exact versions of moee-studio's dependencies (with ``[dev]``) installed here.

``make install`` installs with ``-c constraints.txt``, so CI and a fresh machine get the versions the
suite last passed with, not whatever PyPI released since. Run it after changing a dependency and a
green ``make test``:

    python scripts/lock_constraints.py > constraints.txt

torch is left out (``make`` pins it by ``TORCH_SPEC``: the CPU wheel here, a CUDA build elsewhere), as
are the packaging tools.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "moee-studio"
EXTRAS = ("dev", "cluster")
NOT_LOCKED = {"torch", "pip", "setuptools", "wheel", PROJECT}


def installed_closure(name: str, extras: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """``{canonical name: (name, installed version)}`` of ``name`` and everything it needs, here."""
    found: dict[str, tuple[str, str]] = {}
    walked: dict[str, set[str]] = {}
    pending = [(name, set(extras))]
    while pending:
        current, wanted = pending.pop()
        key = canonicalize_name(current)
        try:
            dist = distribution(current)
        except PackageNotFoundError:
            continue  # an optional dependency not installed here
        done = walked.setdefault(key, set())
        if key in found and wanted <= done:
            continue
        found[key] = (dist.metadata["Name"], dist.version)
        done.update(wanted)
        environments = [{"extra": extra} for extra in wanted | {""}]
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, set(requirement.extras)))
    return found


def main() -> int:
    closure = installed_closure(PROJECT, EXTRAS)
    if canonicalize_name(PROJECT) not in closure:
        print(f"{PROJECT} is not installed here: run `make install` first", file=sys.stderr)
        return 2
    print("# Exact versions the test suite passed with; written by scripts/lock_constraints.py.")
    print("# make install uses it (pip -c); on another Python, `make CONSTRAINTS= install` skips it.")
    for key, (name, version) in sorted(closure.items()):
        if key not in NOT_LOCKED:
            print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
