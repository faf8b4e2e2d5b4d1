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
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

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
    claims = "\n".join(f"- [{c['status']}] {c['claim']}" for c in record.get("claims", []))
    return head + "\n\n" + table + "\n" + (f"\n{claims}\n" if claims else "")


def update_text(text: str, out_root: Path) -> tuple[str, list[str]]:
    """Every block of ``text`` refilled from ``out_root``; returns (new text, blocks left as they were)."""
    missing = []

    def fill(m: re.Match) -> str:
        if m["exp"] == SALIENCY_BENCHMARK:
            from common.saliency import collect_benchmark, render_benchmark
            rows = collect_benchmark(out_root, m["preset"])
            if not rows:
                missing.append(f"{m['exp']} {m['preset']} (no saliency/ metrics under {out_root})")
                return m.group(0)
            body = (f"_Written by `python -m common.run --readme-tables` from every `results/*/{m['preset']}/"
                    f"result.json` with `saliency/` metrics; mean ± std over each run's seeds._\n\n"
                    + render_benchmark(rows) + "\n")
            return f"{m.group(1)}{body}<!-- end results sha256:{body_hash(body)} -->"
        path = Path(out_root) / m["exp"] / m["preset"] / "result.json"
        if not path.exists():
            missing.append(f"{m['exp']} {m['preset']} (no {path})")
            return m.group(0)
        body = render_block(json.loads(path.read_text()), (m["keys"] or "").split())
        return f"{m.group(1)}{body}<!-- end results sha256:{body_hash(body)} -->"
    return BLOCK.sub(fill, text), missing


def stale_blocks(text: str) -> list[str]:
    """Blocks whose body no longer matches the hash the command wrote (edited by hand)."""
    return [f"{m['exp']} {m['preset']}" for m in BLOCK.finditer(text) if body_hash(m["body"]) != m["sha"]]


def chapter_readmes() -> list[Path]:
    return sorted(p for p in ROOT.glob("*/README.md") if not p.parent.name.startswith("."))


def update_readmes(out_root: str | Path = "results", only: list[str] | None = None) -> list[Path]:
    """Refill the results blocks of the chapter READMEs (``only``: these chapter folders)."""
    changed = []
    for path in chapter_readmes():
        if only and path.parent.name not in only:
            continue
        text = path.read_text()
        new, missing = update_text(text, Path(out_root))
        for m in missing:
            print(f"warning: {path}: block {m} left as it was")
        if new != text:
            write_text_atomic(path, new)
            changed.append(path)
    return changed
