"""Apply a preset: merge its params overrides into params.yaml (comments kept), after checking
that the result is valid; then run `dvc repro` or `dvc exp run`.

    python stages/preset.py presets/paper.yaml            # writes params.yaml
    python stages/preset.py presets/paper.yaml --print    # shows the merged params, writes nothing
"""

import argparse
import sys
from pathlib import Path

from fovea.presets import PresetError, apply_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", type=Path, help="a presets/*.yaml file")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--print", action="store_true", help="print the merged params.yaml instead of writing it")
    args = parser.parse_args()

    try:
        merged = apply_preset(args.params, args.preset, write=not args.print)
    except PresetError as error:
        raise SystemExit(f"preset: {error}") from None
    if args.print:
        sys.stdout.write(merged.text)
        return
    for change in merged.changes:
        before = "(absent)" if change.before is None else change.before
        print(f"  {change.key}: {before} -> {change.after}")
    unchanged = " (already applied: nothing changed)" if not merged.changes else ""
    print(f"preset: {args.preset} applied to {args.params}{unchanged}; next: dvc repro (or dvc exp run)")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
