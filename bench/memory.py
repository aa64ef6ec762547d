"""Peak memory of one table's load does not grow with the table: 10x the rows, the same peak RSS.

python -m bench.memory [--small 200000] [--large 2000000]
"""

from __future__ import annotations

import argparse

from lab.memory import peak_rss_kib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    args = parser.parse_args()
    for mode in ("full", "incremental"):
        small, large = peak_rss_kib(args.small, mode), peak_rss_kib(args.large, mode)
        print(
            f"memory {mode:<11} peak RSS {args.small:>9} rows: {small / 1024:7.1f} MiB   "
            f"{args.large:>9} rows: {large / 1024:7.1f} MiB   ratio {large / small:.2f} "
            f"(rows x{args.large / args.small:.0f})"
        )


if __name__ == "__main__":
    main()
