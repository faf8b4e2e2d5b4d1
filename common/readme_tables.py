"""Chapter README results blocks, written by a command from ``results/``, never by hand.

A chapter README marks where a run's numbers go::

    <!-- results vqa.tab4_1 default: acc_omega_all acc_P_P acc_hybrid_NP -->
    ...written by `python -m common.run --readme-tables`...
    <!-- end results sha256:1a2b3c4d5e6f7a8b -->

The opening line names the experiment, the preset and the metrics to show (default: the reported
ones). The name ``saliency-benchmark`` stands for the one saliency benchmark: every
``saliency/<model>/<method>/<score>`` metric of every result at the preset (``common.saliency``). The command fills the block from ``results/<experiment>/<preset>/result.json``: the run's
commit, preset, seeds and CPU, each metric's mean ± std over the seeds and per-seed values beside
the thesis' number, and the claim verdicts. The closing line carries a hash of the block, so a
test (tests/test_readme_tables.py) fails when a number is edited by hand.

Only the preset's canonical result is ever written: a ``<preset>/result.json`` whose seeds are not
the preset's, or which has ``--set`` overrides (left there by an older version), is refused with one
line. A hash proves only that the command wrote a block, not from which run: ``--check-readme``
(``check_readmes``) regenerates every block from a results folder in memory and names each cell
that differs, and ``seed_mean_mismatches`` checks that each row's mean is the mean of its own
per-seed cells.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

from common.config import ConfigError
from common.results import fmt_value, markdown_table, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- results (?P<exp>\S+) (?P<preset>\w+)(?::(?P<keys>[^>]*))? -->\n)(?P<body>.*?)"
                   r"(<!-- end results sha256:(?P<sha>[0-9a-f]*) -->)", re.S)


SALIENCY_BENCHMARK = "saliency-benchmark"


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def render_block(record: Mapping[str, Any], keys: list[str]) -> str:
    """The body of one block from a result record."""
    prov = record["provenance"]
    seeds = prov.get("seeds", [prov.get("seed")])
    std = record.get("metrics_std") or {}
    by_seed = record.get("metrics_by_seed") or {}
    keys = keys or list(record.get("reported", {}))
    git = prov.get("git", {})
    head = (f"_Written by `python -m common.run --readme-tables` from `results/{record['experiment']}/"
            f"{record['preset']}/result.json`: commit {str(git.get('commit'))[:10]}"
            f"{' (uncommitted changes)' if git.get('dirty') else ''}, preset `{record['preset']}`, "
            f"seeds {', '.join(map(str, seeds))}, CPU {prov.get('device', {}).get('cpu_model', '?')}, "
            f"{prov.get('started_utc', '?')}._")
    rows = []
    for k in keys:
        m = record["metrics"].get(k)
        rep = record.get("reported", {}).get(k)
        rep = rep.get("value") if isinstance(rep, Mapping) else rep
        mean = f"{fmt_value(m)} ± {fmt_value(std[k])}" if k in std else fmt_value(m)
        per = ", ".join(fmt_value(by_seed[str(s)].get(k)) for s in seeds) if len(seeds) > 1 and by_seed else "-"
        rows.append([k, mean, per, fmt_value(rep)])
    on = record.get("reported_on") or "the thesis' data"
    table = markdown_table(["metric", f"ours (mean ± std, {len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
                            "per seed", f"thesis ({on})"], rows)
    claims = "\n".join(f"- [{c['status']}] {c['claim']}{_per_seed(c)}" for c in record.get("claims", []))
    return head + "\n\n" + table + "\n" + (f"\n{claims}\n" if claims else "")


def _per_seed(claim: Mapping) -> str:
    """" (passes on k/n seeds: PASS, FAIL, ...)" for a claim judged over several seeds, else ""."""
    seeds = claim.get("seeds") or {}
    if len(seeds) < 2 or all(v == "SKIP" for v in seeds.values()):
        return ""
    n_pass = sum(v == "PASS" for v in seeds.values())
    return f" (passes on {n_pass}/{len(seeds)} seeds: {', '.join(seeds.values())})"


class _NoResult(Exception):
    """A block whose experiment has no result in the results folder (the message says where)."""


def _canonical_record(path: Path, preset: str) -> dict:
    """The result at ``path``, refused (ConfigError: one line, exit code 2) unless it is the preset's
    own run: the registered experiment's seed set at that preset, no ``--set`` overrides."""
    from common.registry import discover
    record = json.loads(path.read_text())
    prov = record.get("provenance", {})
    seeds = prov.get("seeds") or [prov.get("seed")]
    exp = discover().get(record.get("experiment"))
    problems = []
    if exp is not None and sorted(seeds) != sorted(exp.seeds_for(preset)):
        problems.append(f"seeds {', '.join(map(str, seeds))} where preset {preset} runs "
                        f"{', '.join(map(str, exp.seeds_for(preset)))}")
    if prov.get("overrides"):
        problems.append(f"--set overrides {prov['overrides']}")
    if problems:
        raise ConfigError(f"{path.parent} holds a result that is not the preset's canonical run "
                          f"({'; '.join(problems)}): the README takes only the preset's own run; rerun "
                          f"{record.get('experiment')} --preset {preset} without --seed/--seeds/--set")
    return record


def _block_body(exp: str, preset: str, keys: str | None, out_root: Path) -> str:
    """A block's body regenerated from ``out_root``; raises _NoResult when there is nothing to fill it from."""
    if exp == SALIENCY_BENCHMARK:
        from common.saliency import collect_benchmark, render_benchmark
        rows = collect_benchmark(out_root, preset)
        if not rows:
            raise _NoResult(f"no saliency/ metrics under {out_root}")
        for name in sorted({r["experiment"] for r in rows}):
            _canonical_record(Path(out_root) / name / preset / "result.json", preset)
        return (f"_Written by `python -m common.run --readme-tables` from every `results/*/{preset}/"
                f"result.json` with `saliency/` metrics; mean ± std over each run's seeds._\n\n"
                + render_benchmark(rows) + "\n")
    path = Path(out_root) / exp / preset / "result.json"
    if not path.exists():
        raise _NoResult(f"no {path}")
    return render_block(_canonical_record(path, preset), (keys or "").split())


def update_text(text: str, out_root: Path) -> tuple[str, list[str]]:
    """Every block of ``text`` refilled from ``out_root``; returns (new text, blocks left as they were).
    A non-canonical result raises ConfigError."""
    missing = []

    def fill(m: re.Match) -> str:
        try:
            body = _block_body(m["exp"], m["preset"], m["keys"], Path(out_root))
        except _NoResult as e:
            missing.append(f"{m['exp']} {m['preset']} ({e})")
            return m.group(0)
        return f"{m.group(1)}{body}<!-- end results sha256:{body_hash(body)} -->"
    return BLOCK.sub(fill, text), missing


def stale_blocks(text: str) -> list[str]:
    """Blocks whose body no longer matches the hash the command wrote (edited by hand)."""
    return [f"{m['exp']} {m['preset']}" for m in BLOCK.finditer(text) if body_hash(m["body"]) != m["sha"]]


def chapter_readmes() -> list[Path]:
    return sorted(p for p in ROOT.glob("*/README.md") if not p.parent.name.startswith("."))


def update_readmes(out_root: str | Path = "results", only: list[str] | None = None) -> list[Path]:
    """Refill the results blocks of the chapter READMEs (``only``: these chapter folders). Every
    README is regenerated before any is written, so a refused result leaves them all as they were."""
    new_texts = {}
    for path in chapter_readmes():
        if only and path.parent.name not in only:
            continue
        text = path.read_text()
        new, missing = update_text(text, Path(out_root))
        for m in missing:
            print(f"warning: {path}: block {m} left as it was")
        if new != text:
            new_texts[path] = new
    for path, new in new_texts.items():
        write_text_atomic(path, new)
    return list(new_texts)


# --------------------------------------------------------------------------------------------------
# Checks: a block against a results folder, and a block against itself
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ReadmeCheck:
    differences: list[str] = dataclasses.field(default_factory=list)   # "file: block ...: row, column: a vs b"
    not_checked: list[str] = dataclasses.field(default_factory=list)   # blocks without a result in the folder
    checked: int = 0                                                    # blocks compared


def _row_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def block_cells(body: str) -> dict[tuple[str, str], str]:
    """A block's body as ``{(row, column): text}``: every table cell (a row named by its first cell,
    or its first two where the first repeats, as model / method), the provenance line and each
    claim's verdict."""
    lines = body.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    cells = {}
    if len(table) >= 2:
        headers, rows = _row_cells(table[0]), [_row_cells(ln) for ln in table[2:]]
        firsts = [r[0] for r in rows]
        n_key = 1 if len(set(firsts)) == len(firsts) else 2
        for r in rows:
            for header, cell in zip(headers[n_key:], r[n_key:]):
                cells[(" / ".join(r[:n_key]), header)] = cell
    for ln in lines:
        if ln.startswith("_Written by"):
            cells[("provenance line", "")] = ln
        elif claim := re.match(r"- \[(\w+)\] (.*?)(?: \(passes on (\d+/\d+ seeds: [A-Z, ]+)\))?$", ln):
            cells[(f"claim: {claim[2]}", "verdict")] = claim[1]
            if claim[3]:
                cells[(f"claim: {claim[2]}", "per seed")] = claim[3]
    return cells


def check_text(text: str, out_root: Path, label: str = "") -> ReadmeCheck:
    """Compare every block of ``text`` with the block ``--readme-tables`` would write from ``out_root``."""
    report = ReadmeCheck()
    for m in BLOCK.finditer(text):
        block = f"{label}: block {m['exp']} {m['preset']}"
        try:
            fresh = _block_body(m["exp"], m["preset"], m["keys"], Path(out_root))
        except _NoResult as e:
            report.not_checked.append(f"{block} ({e})")
            continue
        except ConfigError as e:
            report.checked += 1
            report.differences.append(f"{block}: {e}")
            continue
        report.checked += 1
        ours, theirs = block_cells(m["body"]), block_cells(fresh)
        for key in list(ours) + [k for k in theirs if k not in ours]:
            a, b = ours.get(key, "(absent)"), theirs.get(key, "(absent)")
            if a != b:
                row, column = key
                report.differences.append(f"{block}: row {row}" + (f", column {column}" if column else "")
                                          + f": README {a!r}, results {b!r}")
    return report


def check_readmes(out_root: str | Path = "results", only: list[str] | None = None) -> ReadmeCheck:
    """``check_text`` over every chapter README (``only``: these chapter folders)."""
    total = ReadmeCheck()
    for path in chapter_readmes():
        if only and path.parent.name not in only:
            continue
        one = check_text(path.read_text(), Path(out_root), str(path.relative_to(ROOT)))
        total.differences += one.differences
        total.not_checked += one.not_checked
        total.checked += one.checked
    return total


def _last_digit(cell: str) -> float:
    """The value of one unit in the last printed digit of a number as ``fmt_value`` prints it."""
    mantissa, _, exponent = cell.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def seed_mean_mismatches(text: str) -> list[str]:
    """Rows whose mean cell is not the mean of the row's own per-seed cells, to the printed precision
    (each printed number is off by at most half a unit of its last digit); a hand-edited mean whose
    block hash was stamped again still fails here."""
    bad = []
    for m in BLOCK.finditer(text):
        table = [ln for ln in m["body"].splitlines() if ln.startswith("|")]
        if m["exp"] == SALIENCY_BENCHMARK or len(table) < 2:
            continue
        headers = _row_cells(table[0])
        mean_col = next((i for i, h in enumerate(headers) if h.startswith("ours")), None)
        per_col = next((i for i, h in enumerate(headers) if h == "per seed"), None)
        if mean_col is None or per_col is None:
            continue
        for row in map(_row_cells, table[2:]):
            mean_text, per_texts = row[mean_col].split(" ± ")[0], row[per_col].split(", ")
            try:
                mean, per = float(mean_text), [float(v) for v in per_texts]
            except ValueError:          # one seed ("-"), or not a number (a bool, a list)
                continue
            if any(v != v for v in [mean, *per]):   # nan
                continue
            tolerance = 0.5 * _last_digit(mean_text) + 0.5 * max(map(_last_digit, per_texts))
            if abs(mean - sum(per) / len(per)) > tolerance * (1 + 1e-9):
                bad.append(f"{m['exp']} {m['preset']}: row {row[0]}: mean {mean_text} but its seeds "
                           f"{', '.join(per_texts)} average {sum(per) / len(per):.6g}")
    return bad
