"""Markdown for the quality suite: one summary table (ours vs the best baseline) and the details."""

from __future__ import annotations

from .suite import FUSED, OURS, CaseResult


def _ms(result: CaseResult, method: str, level: int) -> str:
    m, s = result.mean_sd(method, level)
    return f"{m:.3f} ± {s:.3f}"


def _classes(result: CaseResult, method: str, level: int) -> str:
    names = result.case.volumes[0].levels[level][2]
    per = result.per_class_mean(method, level)
    return ", ".join(f"{names[c] if c < len(names) else c} {v:.2f}" for c, v in sorted(per.items()))


def summary_table(results: list[CaseResult]) -> str:
    lines = [
        "| case | level (k) | ours | best baseline | its score | ours − best | small classes found (ours / best) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for level in r.levels():
            k = r.case.volumes[0].levels[level][0]
            best = r.best_baseline(level)
            gap = r.mean_sd(OURS, level)[0] - r.mean_sd(best, level)[0]
            n_small = len(r.small_classes(level))
            small = (
                f"{r.small_found(OURS, level):.1f} / {r.small_found(best, level):.1f} of {n_small}" if n_small else "—"
            )
            lines.append(
                f"| {r.case.name} | {level} ({k}) | {_ms(r, OURS, level)} | {best} | "
                f"{_ms(r, best, level)} | {gap:+.3f} {'✓' if gap >= 0 else '✗'} | {small} |"
            )
    return "\n".join(lines)


def details(result: CaseResult) -> str:
    levels = result.levels()
    head = (
        "| method | "
        + " | ".join(f"level {lv} (k={result.case.volumes[0].levels[lv][0]})" for lv in levels)
        + " | seconds |"
    )
    lines = [f"**{result.case.name}** — {result.case.source}", "", head, "|" + " --- |" * (len(levels) + 2)]
    for method in result.scores:
        cells = " | ".join(_ms(result, method, lv) for lv in levels)
        bold = "**" if method in (OURS, FUSED) else ""
        lines.append(f"| {bold}{method}{bold} | {cells} | {result.seconds.get(method, 0):.0f} |")
    lines.append("")
    for lv in levels:
        best = result.best_baseline(lv)
        lines.append(
            f"- level {lv} per-class Dice — ours: {_classes(result, OURS, lv)}; "
            f"best baseline ({best}): {_classes(result, best, lv)}"
        )
    return "\n".join(lines)


def markdown(results: list[CaseResult], header: str) -> str:
    return "\n\n".join([header, summary_table(results), *(details(r) for r in results)])
