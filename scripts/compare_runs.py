"""Compare two storages' stored runs unit by unit (README, Measured: 1 worker against 2).

    python scripts/compare_runs.py STORAGE_A STORAGE_B [--rtol R]

Studies are matched by name, units within a study by their key (tuning trial k or seed): the
counted trial of each (bench.work.done_units), so an interrupted or duplicate trial is no unit.
A unit's outcome is its state and value (a pruned trial's last reported value). Prints how many
units are equal to every bit, each one that differs (with its relative difference) and how many
only one storage holds. Exits 0 when both hold the same units and none differs by more than
``--rtol`` (default 0: bit for bit), 1 otherwise, 2 on a bad storage URL (nothing is created).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import studies  # noqa: E402
from bench.errors import UserError  # noqa: E402
from bench.storage import open_storage  # noqa: E402
from bench.work import done_units  # noqa: E402

Outcome = tuple[str, float | None]


def outcome(t) -> Outcome:
    value = t.value
    if value is None and t.intermediate_values:
        value = t.intermediate_values[max(t.intermediate_values)]
    return t.state.name, value


def stored_units(url: str) -> dict[tuple[str, int], Outcome]:
    """(study name, unit key) -> outcome, for every counted unit in the storage at ``url``."""
    storage = open_storage(url, create=False)
    out = {}
    for name in studies.summaries(storage):
        for key, t in done_units(studies.trials(storage, name)).items():
            out[(name, key)] = outcome(t)
    return out


def relative(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return math.inf
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", metavar="STORAGE_A")
    p.add_argument("b", metavar="STORAGE_B")
    p.add_argument("--rtol", type=float, default=0.0,
                   help="largest relative difference still counted as agreeing (default 0)")
    args = p.parse_args(argv)
    if not args.rtol >= 0:
        print(f"error: --rtol {args.rtol} must be a number >= 0", file=sys.stderr)
        return 2
    try:
        a, b = stored_units(args.a), stored_units(args.b)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    both = sorted(set(a) & set(b))
    equal = [k for k in both if a[k] == b[k]]
    differ = [k for k in both if a[k] != b[k]]
    for k in differ:
        (sa, va), (sb, vb) = a[k], b[k]
        state = f"{sa}" if sa == sb else f"{sa} / {sb}"
        print(f"differs: {k[0]} unit {k[1]}: {va!r} / {vb!r} ({state}; "
              f"relative {relative(va, vb):.2g})")
    beyond = [k for k in differ if a[k][0] != b[k][0] or relative(a[k][1], b[k][1]) > args.rtol]
    print(f"{len(a)} units in A, {len(b)} in B; {len(equal)} equal to every bit, "
          f"{len(differ)} differ ({len(beyond)} by more than rtol {args.rtol:g}); "
          f"{len(set(a) - set(b))} only in A, {len(set(b) - set(a))} only in B")
    return 0 if not beyond and set(a) == set(b) else 1


if __name__ == "__main__":
    sys.exit(main())
