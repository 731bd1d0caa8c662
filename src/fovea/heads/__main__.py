"""``python -m fovea.heads``: every registered head's parameter count at the paper's sizes."""

from __future__ import annotations

from fovea.heads import PAPER_SIZES, build_head, count_parameters, head_names


def main() -> None:
    sizes = ", ".join(f"{key}={value}" for key, value in PAPER_SIZES.items())
    print(f"Prediction heads at the paper's sizes ({sizes}), default options:\n")
    rows = [(name, count_parameters(build_head(name, **PAPER_SIZES))) for name in head_names()]
    print(f"| {'head':<6} | {'parameters':>12} |")
    print(f"|{'-' * 8}|{'-' * 13}:|")
    for name, count in rows:
        print(f"| {name:<6} | {count:>12,} |")


if __name__ == "__main__":
    main()
