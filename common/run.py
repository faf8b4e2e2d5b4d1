"""The one CLI.

    python -m common.run --list
    python -m common.run <experiment> --preset {smoke,default,paper} [--data-root D] [--out D]
                                      [--seeds 0,1,2] [--jobs N] [--device D] [--set key=value ...]
    python -m common.run --all --preset default        # every experiment, then REPORT.md
    python -m common.run vqa --preset default          # a whole chapter (= --all --only vqa)
    python -m common.run --report --preset default     # only rebuild REPORT.md
    python -m common.run --readme-tables               # rewrite the chapter READMEs' results blocks
    python -m common.run --check-readme --out D        # do the READMEs' blocks say what the results in D say?

Multi-GPU / multi-node: ``torchrun --nproc_per_node=8 -m common.run <experiment> --preset paper``.
Bad names, presets, config keys or values: one line on stderr, exit code 2, before any work.
A read-only --out: one line, exit code 2, before any work.
A failed run: one message naming the file and the fix, exit code 1 (the traceback is in the failed
run's error.txt; ``--debug`` prints it here too). Ctrl-C: exit code 130, and a rerun resumes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common.config import ConfigError, parse_set_args
from common.experiment import ExperimentFailed, result_dir, run_experiments
from common.registry import PRESETS, discover, get, select
from common.report import write_report


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2
        print(f"error: {message} (python -m common.run --help)", file=sys.stderr)
        raise SystemExit(2)


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed list {text!r} (e.g. 0,1,2)") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _positive(text: str) -> int:
    v = _non_negative(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m common.run", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", nargs="?", help="registered name, e.g. vqa.tab4_1 (see --list), or a chapter (vqa)")
    p.add_argument("--list", action="store_true", help="list experiments and exit")
    p.add_argument("--all", action="store_true", help="run every experiment at the preset, then the report")
    p.add_argument("--only", default="", help="with --all: comma-separated experiment names or chapters; "
                                                 "with --readme-tables / --check-readme: chapter folders")
    p.add_argument("--report", action="store_true", help="rebuild results/REPORT.md and exit")
    p.add_argument("--readme-tables", action="store_true",
                   help="rewrite the results blocks of the chapter READMEs from results/ and exit")
    p.add_argument("--check-readme", action="store_true",
                   help="compare every README results block with the results in --out, cell by cell; exit 1 "
                        "naming each difference (or when no block has a result there)")
    p.add_argument("--preset", default="default", help="smoke | default | paper")
    p.add_argument("--data-root", default=None, help="root of real datasets (else $ICV_DATA_ROOT)")
    p.add_argument("--out", default="results", help="output root (default: results)")
    p.add_argument("--seed", type=_non_negative, default=None,
                   help="run this one training seed (written to <preset>+seeds-<n>/ unless it is the preset's)")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="training seeds, e.g. 0,1,2 (default: the preset's: 3 at default, 1 at smoke/paper)")
    p.add_argument("--jobs", type=_positive, default=max(1, min(2, os.cpu_count() or 1)),
                   help="parallel processes over (chapter, seed) lanes (default: up to 2)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (torch and JAX alike)")
    p.add_argument("--threads", type=_non_negative, default=1,
                   help="torch CPU threads per process (default 1; 0 = torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted keys), repeatable; written to <preset>+set-<hash>/")
    p.add_argument("--debug", action="store_true", help="print tracebacks on the terminal too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.preset not in PRESETS:
            raise ConfigError(f"unknown preset '{args.preset}' (choose from {', '.join(PRESETS)})")
        if args.seed is not None and args.seeds is not None:
            raise ConfigError("give --seed or --seeds, not both")
        seeds = [args.seed] if args.seed is not None else args.seeds
        overrides = parse_set_args(args.set)
        if args.list:
            for name, exp in discover().items():
                print(f"{name:28s} {exp.title}  [{exp.source}]")
            return 0
        if args.report:
            print(write_report(args.out, args.preset))
            return 0
        if args.readme_tables:
            from common.readme_tables import update_readmes
            for path in update_readmes(args.out, [s.strip() for s in args.only.split(",") if s.strip()]):
                print(f"updated {path}")
            return 0
        if args.check_readme:
            return _check_readme(args)
        if args.all:
            names = select(list(discover()), [s.strip() for s in args.only.split(",") if s.strip()])
        elif args.experiment and "." not in args.experiment and "@" not in args.experiment:
            names = select(list(discover()), [args.experiment])     # a chapter: all its experiments
            args.all = True                                          # ... and the report, as --all
        elif args.experiment:
            names = [get(args.experiment).name]
        else:
            raise ConfigError("name an experiment, or use --list / --all / --report")
        return _run(names, seeds, overrides, args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        msg = str(e) or "no checkpoint message; rerun the same command: finished stages load, the others resume"
        print(f"\ninterrupted: {msg}", file=sys.stderr)
        return 130


def _run(names, seeds, overrides, args) -> int:
    t0 = time.time()
    rank = int(os.environ.get("RANK", 0))
    failures = []

    def done(name, outcome):
        if isinstance(outcome, ExperimentFailed):
            failures.append(name)
            print(f"error: {outcome}", file=sys.stderr)
            if args.debug and outcome.failed_dir and (outcome.failed_dir / "error.txt").exists():
                print((outcome.failed_dir / "error.txt").read_text(), file=sys.stderr)
        elif rank == 0:
            _print_summary(outcome, args)

    if len(names) > 1:
        print(f"running {len(names)} experiments at preset {args.preset} "
              f"({'seeds ' + ','.join(map(str, seeds)) if seeds else 'preset seeds'}, {args.jobs} job(s))", flush=True)
    run_experiments(names, args.preset, out_root=args.out, data_root=args.data_root, seeds=seeds, jobs=args.jobs,
                    device=args.device, overrides=overrides, threads=args.threads, on_done=done)
    if args.all and rank == 0:
        report = write_report(args.out, args.preset)
        print(f"\nreport: {report}  ({time.time() - t0:.0f} s; {len(names) - len(failures)}/{len(names)} ok)")
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _check_readme(args) -> int:
    """Exit 0 when every README block with a result in --out says what that result says; 1 when a
    cell differs, or when no block has a result there to compare with (a check of nothing is no
    pass). Blocks without a result are listed as not checked and do not fail the check otherwise."""
    from common.readme_tables import check_readmes
    report = check_readmes(args.out, [s.strip() for s in args.only.split(",") if s.strip()])
    for line in report.not_checked:
        print(f"not checked: {line}")
    for line in report.differences:
        print(f"differs: {line}")
    print(f"{report.checked} block(s) checked against {args.out}: {len(report.differences)} difference(s), "
          f"{len(report.not_checked)} block(s) not checked")
    if report.differences:
        print(f"error: README blocks differ from {args.out}; rerun python -m common.run --readme-tables --out "
              f"{args.out} (or find the run they were written from)", file=sys.stderr)
        return 1
    if not report.checked:
        print(f"error: no README block has a result in {args.out}: nothing was checked", file=sys.stderr)
        return 1
    return 0


def _print_summary(record, args) -> None:
    prov = record["provenance"]
    std = record.get("metrics_std") or {}
    print(f"\n== {record['experiment']} ({args.preset}, seeds {','.join(map(str, prov['seeds']))}) in "
          f"{prov['wall_time_s']:.1f} s over its seeds -> "
          f"{result_dir(args.out, record['experiment'], args.preset, prov.get('overrides'), prov['seeds'])}")
    for st in next(iter(prov.get("stages", {}).values()), []):
        print(f"   stage {st['stage']}: {st['status']}" + (f" (step {st['step']})" if st.get("step") else "")
              + f" in {st['folder']}")
    for k, v in record["metrics"].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            print(f"   {k:40s} {v:.4g}" + (f" ± {std[k]:.2g}" if k in std else ""))
    for c in record["claims"]:
        print(f"   [{c['status']}] {c['claim']}: {c['detail']}")


if __name__ == "__main__":
    sys.exit(main())
