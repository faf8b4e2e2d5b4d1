"""The one CLI.

    python -m common.run --list
    python -m common.run <experiment> --preset {smoke,default,paper} [--data-root D] [--out D]
                                      [--seed N] [--device D] [--set key=value ...]
    python -m common.run --all --preset default        # every experiment, then REPORT.md
    python -m common.run --report --preset default     # only rebuild REPORT.md

Multi-GPU / multi-node: ``torchrun --nproc_per_node=8 -m common.run <experiment> --preset paper``.
Bad names, presets or config keys: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common.config import ConfigError, parse_set_args
from common.experiment import PRESETS, discover, get, run_experiment, write_report


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2
        print(f"error: {message} (python -m common.run --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m common.run", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", nargs="?", help="registered name, e.g. vqa.tab4_1 (see --list)")
    p.add_argument("--list", action="store_true", help="list experiments and exit")
    p.add_argument("--all", action="store_true", help="run every experiment at the preset, then the report")
    p.add_argument("--only", default="", help="with --all: comma-separated name prefixes to run")
    p.add_argument("--report", action="store_true", help="rebuild results/REPORT.md and exit")
    p.add_argument("--preset", default="default", help="smoke | default | paper")
    p.add_argument("--data-root", default=None, help="root of real datasets (else $ICV_DATA_ROOT)")
    p.add_argument("--out", default="results", help="output root (default: results)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for the run (default 1; 0 = torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted keys), repeatable")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.preset not in PRESETS:
            raise ConfigError(f"unknown preset '{args.preset}' (choose from {', '.join(PRESETS)})")
        overrides = parse_set_args(args.set)
        if args.list:
            for name, exp in discover().items():
                print(f"{name:28s} {exp.title}  [{exp.source}]")
            return 0
        if args.report:
            print(write_report(args.out, args.preset))
            return 0
        if args.all:
            return _run_all(args, overrides)
        if not args.experiment:
            raise ConfigError("name an experiment, or use --list / --all / --report")
        exp = get(args.experiment)
        exp.resolve_config(args.preset, overrides)  # validate before any work starts
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    record = run_experiment(args.experiment, args.preset, out_root=args.out, data_root=args.data_root,
                            seed=args.seed, device=args.device, overrides=overrides, threads=args.threads)
    if int(os.environ.get("RANK", 0)) == 0:
        _print_summary(record, args)
    return 0


def _print_summary(record, args) -> None:
    print(f"\n== {record['experiment']} ({args.preset}) in {record['provenance']['wall_time_s']:.1f} s "
          f"-> {os.path.join(args.out, record['experiment'], args.preset)}")
    for k, v in record["metrics"].items():
        if isinstance(v, (int, float)):
            print(f"   {k:40s} {v:.4g}")
    for c in record["claims"]:
        print(f"   [{c['status']}] {c['claim']}: {c['detail']}")


def _run_all(args, overrides) -> int:
    names = list(discover())
    if args.only:
        prefixes = tuple(s.strip() for s in args.only.split(",") if s.strip())
        names = [n for n in names if n.startswith(prefixes)]
    failures = []
    t0 = time.time()
    for i, name in enumerate(names, 1):
        print(f"\n[{i}/{len(names)}] {name} --preset {args.preset}", flush=True)
        try:
            record = run_experiment(name, args.preset, out_root=args.out, data_root=args.data_root,
                                    seed=args.seed, device=args.device, overrides=overrides,
                                    threads=args.threads)
            _print_summary(record, args)
        except Exception as e:  # keep going: one failure must not cost the other results
            failures.append(name)
            print(f"[{name}] FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    report = write_report(args.out, args.preset)
    print(f"\nreport: {report}  ({time.time() - t0:.0f} s; {len(names) - len(failures)}/{len(names)} ok)")
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
