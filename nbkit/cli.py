"""`python -m nbkit` / `nbkit`: list variants, train, summarise."""

from __future__ import annotations

import argparse
import sys


def cmd_variants(args) -> None:
    from .models import variant_table

    rows = variant_table(num_classes=args.num_classes)
    width = max(len(r["variant"]) for r in rows)
    print(f"{'variant':<{width}}  {'params':>11}  description")
    for r in rows:
        print(f"{r['variant']:<{width}}  {r['parameters']:>11,}  {r['description']}")
    print(f"\n{len(rows)} variants; parameter counts for a {args.num_classes}-class dataset "
          "(only -tnc sizes its head to the classes; the others keep the original's 1000-way head)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbkit", description="Compare image-classification models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("variants", help="list the variants with description and parameter count")
    p.add_argument("--num-classes", type=int, default=100, help="class count of the dataset (default 100)")
    p.set_defaults(func=cmd_variants)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, PermissionError, OSError) as e:
        print(f"nbkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
