"""bench/run.py's results as a console table and as the README's markdown table."""

from __future__ import annotations

from typing import Any

NAMES = {
    "tutorial": "(a) tutorial loop",
    "tight": "(b) tight loop",
    "tight*": "(b*) tight, engine's settings",
    "engine": "(c) nncli engine",
}


def _rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, w in result["workloads"].items():
        loops = w["loops"]
        for loop, name in NAMES.items():
            if loop not in loops:
                continue
            entry = loops[loop]
            acc = entry["final"].get("test_accuracy", entry["final"].get("train_accuracy"))
            rows.append(
                [
                    key,
                    name,
                    f"{entry['median_s']:.3f}",
                    f"{entry['min_s']:.3f}",
                    f"{entry['samples_per_s']:,.0f}",
                    f"{acc:.3f}" if acc is not None else "",
                ]
            )
        s = w["engine_settings"]
        for suffix in ("", " (min)"):
            rows.append(
                [
                    key,
                    f"c/a {w['c/a' + suffix]:.2f}x  c/b {w['c/b' + suffix]:.2f}x  "
                    f"c/b* {w['c/b*' + suffix]:.2f}x{suffix}",
                    f"{w['overhead_us_per_batch' + suffix]:+.0f} us/batch",
                    "",
                    f"engine: {s['threads']} thread(s)" if not suffix else "",
                    ("fused" if s["fused"] else "foreach" if s["foreach"] else "for-loop")
                    if not suffix
                    else "",
                ]
            )
    return rows


def _cli_rows(result: dict[str, Any]) -> list[list[str]]:
    cli = result.get("cli")
    if not cli:
        return []
    ph = cli["train_phases"]
    return [
        [
            "`nncli --help`",
            f"{cli['help']['median_s']:.2f} s",
            ", ".join(cli["help"]["imports"]) or "none",
        ],
        [
            "`nncli validate experiments/circles.yaml`",
            f"{cli['validate']['median_s']:.2f} s",
            ", ".join(cli["validate"]["imports"]) or "none",
        ],
        [
            "`nncli train experiments/circles.yaml` (whole run folder, plots)",
            f"{cli['train_circles']['median_s']:.2f} s",
            f"peak RSS {cli['train_circles']['peak_rss_mb']:.0f} MB",
        ],
        [
            "tutorial script, whole process (writes nothing)",
            f"{cli['tutorial_circles']['median_s']:.2f} s",
            f"peak RSS {cli['tutorial_circles']['peak_rss_mb']:.0f} MB",
        ],
        [
            "train phases: start-up / training / plots / writing / exit",
            " / ".join(
                f"{ph[k]:.2f}" for k in ("start_up", "training", "plots", "writing", "exit")
            ),
            f"start-up = imports {ph['imports_cli']:.2f} + {ph['imports_engine']:.2f}, "
            f"prepare {ph['prepare']:.2f}",
        ],
    ]


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _machine(result: dict[str, Any]) -> str:
    m = result["machine"]
    load = "/".join(f"{x:.1f}" for x in result["load_before"][:1] + result["load_after"][:1])
    return (
        f"{result['date'][:10]}, {m['nproc']} cores ({m['cpu']}), torch {m['torch']}, "
        f"{m['threads']} intra-op threads"
        + (" (--threads, every loop)" if result.get("threads_option") else "")
        + f", device {result['device']}, load average "
        f"{load} (before/after), median of {result['repeats']}"
        + (" (--quick)" if result["quick"] else "")
    )


def table(result: dict[str, Any]) -> str:
    parts = [_machine(result), ""]
    if result["workloads"]:
        header = ["", "loop", "median s", "min s", "samples/s", "accuracy"]
        parts.append(_grid(header, _rows(result)))
    cli = _cli_rows(result)
    if cli:
        parts += ["", _grid(["command", "median", "notes"], cli)]
    return "\n".join(parts)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Measured {_machine(result)}.", ""]
    if result["workloads"]:
        lines += [
            "| workload | (a) tutorial | (b) tight | (b\\*) tight, engine's settings | (c) nncli "
            "| c/a | c/b | c/b\\* | engine overhead per batch |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for key, w in result["workloads"].items():
            cells = [
                f"{w['loops'][loop]['median_s']:.3f} s ({w['loops'][loop]['samples_per_s']:,.0f}/s)"
                for loop in ("tutorial", "tight", "tight*", "engine")
            ]
            ratios = " | ".join(
                f"{w[r]:.2f}x ({w[r + ' (min)']:.2f}x)" for r in ("c/a", "c/b", "c/b*")
            )
            lines.append(
                f"| {key} | {' | '.join(cells)} | {ratios} "
                f"| {w['overhead_us_per_batch']:+.0f} µs ({w['overhead_us_per_batch (min)']:+.0f} µs) |"
            )
    cli = _cli_rows(result)
    if cli:
        lines += ["", "| command | median | notes |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in cli]
    return "\n".join(lines) + "\n"
