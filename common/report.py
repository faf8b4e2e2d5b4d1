"""REPORT.md and each experiment's markdown section: reported beside measured, tables, figures, claims."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from common import results as R


def render_markdown(record: Mapping[str, Any], heading: str = "##", fig_prefix: str = "") -> str:
    """One experiment's section: reported vs measured, its tables, figures and claim checks."""
    h = heading
    prov = record["provenance"]
    ds = ", ".join(f"{d.get('name')}/{d.get('split')}" for d in prov["datasets"]) or "-"
    seeds = prov.get("seeds", [prov.get("seed")])
    cpu = prov.get("device", {}).get("cpu_model", "?")
    lines = [f"{h} {record['experiment']}: {record.get('title', '')}",
             f"_{record.get('source', '')}. Preset `{record['preset']}`, seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(map(str, seeds))}, data {ds}, {prov['wall_time_s']:.0f} s (all seeds), "
             f"commit {str(prov['git'].get('commit'))[:10]}{' (dirty)' if prov['git'].get('dirty') else ''}, "
             f"CPU {cpu}._", ""]
    if prov.get("overrides"):
        lines += [f"**Not the preset's canonical run**: overrides {prov['overrides']}.", ""]
    if record.get("reported"):
        # a difference only where the run measured what the thesis measured (its data, paper preset)
        same = record["preset"] == "paper" and bool(record.get("reported_on"))
        lines += [f"{h}# Measured beside reported", R.reported_vs_measured(
            record["metrics"], record["reported"], record.get("metrics_std"), same_data=same, measured_on=ds,
            reported_on=record.get("reported_on", "")), ""]
    for t in record.get("tables", []):
        lines += [f"{h}# {t['title']}", t["markdown"], ""]
        if t.get("note"):
            lines += [t["note"], ""]
    for n in record.get("notes", []):
        lines += [f"- {n}"]
    if record.get("notes"):
        lines.append("")
    for f in record.get("figures", []):
        lines += [f"![{f.get('caption') or f['file']}]({fig_prefix}{f['file']})", ""]
    if record.get("claims"):
        lines += [f"{h}# Claim checks", R.markdown_table(
            ["status", "claim", "numbers", "source"],
            [[c["status"], c["claim"], c["detail"], c.get("source", "")] for c in record["claims"]]), ""]
    return "\n".join(lines)


def write_report(out_root: str | os.PathLike = "results", preset: str = "default") -> Path:
    """Gather every experiment's result at ``preset`` into ``<out_root>/REPORT.md``."""

    out_root = Path(out_root)
    records = []
    for path in sorted(out_root.glob(f"*/{preset}/result.json")):   # canonical runs only (no +set-, no +seeds-)
        records.append((path.parent, json.loads(path.read_text())))
    counts: dict[str, int] = {}
    for _, r in records:
        for c in r.get("claims", []):
            counts[c["status"]] = counts.get(c["status"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no claims"
    lines = [f"# Report: preset `{preset}`", "",
             f"{len(records)} experiments; claim checks: {summary}. Numbers in 'measured' columns come "
             f"from the runs below; 'reported' numbers are the thesis' own, copied as printed.", ""]
    lines += [R.markdown_table(["experiment", "title", "claims", "wall time (s, all seeds)", "CPU time (s, all seeds)"],
                               [[r["experiment"], r.get("title", ""),
                                 " ".join(c["status"] for c in r.get("claims", [])) or "-",
                                 r["provenance"]["wall_time_s"], r["provenance"].get("cpu_time_s", "-")]
                                for _, r in records]), ""]
    from common.saliency import collect_benchmark, render_benchmark
    saliency_rows = collect_benchmark(out_root, preset)
    if saliency_rows:
        lines += ["## The saliency benchmark (every chapter's rows)", "",
                  "Every method scored with `common.saliency.score_methods` on the model of the experiment named "
                  "in the last column (AD / AG / AI / insertion / deletion / pointing in %; mean ± std over seeds).",
                  "", render_benchmark(saliency_rows), ""]
    for folder, r in records:
        lines.append(render_markdown(r, heading="##", fig_prefix=f"{folder.relative_to(out_root).as_posix()}/"))
    path = out_root / "REPORT.md"
    out_root.mkdir(parents=True, exist_ok=True)
    R.write_text_atomic(path, "\n".join(lines) + "\n")
    return path
