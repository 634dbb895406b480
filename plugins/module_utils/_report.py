# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reports of fleet jobs: a JSON record, a Markdown page and two PNG charts (with Pillow)."""

from __future__ import annotations

import json
import os
import statistics
import time
import typing as t

try:
    from PIL import Image, ImageDraw, ImageFont
    HAS_PIL = True
except ImportError:
    HAS_PIL = False

COLOURS = {"migrated": (46, 139, 87), "already_migrated": (46, 139, 87), "refused": (150, 150, 150),
           "rolled_back": (230, 145, 56), "stranded": (204, 0, 0), "before": (150, 150, 170),
           "after": (52, 101, 164), "grid": (225, 225, 225), "text": (30, 30, 30)}


def summary(job: str, kind: str, migrations: list[dict[str, t.Any]], plan: dict[str, t.Any],
            imbalance: dict[str, t.Any]) -> dict[str, t.Any]:
    outcomes = [m.get("outcome") for m in migrations]
    downtimes = [float(m["downtime_seconds"]) for m in migrations if m.get("outcome") == "migrated" and m.get("downtime_seconds") is not None]
    return {
        "job": job, "kind": kind, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "planned": len(plan.get("moves", [])), "waves": plan.get("waves", 0),
        # A migration found already done (a job run again) counts as migrated.
        "migrated": outcomes.count("migrated") + outcomes.count("already_migrated"), "rolled_back": outcomes.count("rolled_back"),
        "stranded": outcomes.count("stranded"), "refused": outcomes.count("refused"),
        "unplaced": plan.get("unplaced", []),
        "downtime_seconds": {"max": max(downtimes), "median": statistics.median(downtimes)} if downtimes else None,
        "bytes": sum(int(m.get("bytes") or 0) for m in migrations),
        "imbalance": imbalance,
    }


def markdown(report: dict[str, t.Any], migrations: list[dict[str, t.Any]], utilisation: dict[str, dict[str, float]],
             charts: dict[str, str]) -> str:
    lines = ["# Ferry %s report: %s" % (report["kind"], report["job"]), "", "Written %s." % report["written_at"], "",
             "- planned: %d migration(s) in %d wave(s)" % (report["planned"], report["waves"]),
             "- migrated: %d, rolled back: %d, stranded: %d, refused: %d" % (report["migrated"], report["rolled_back"], report["stranded"],
                                                                             report["refused"]),
             "- imbalance (%s): %s -> %s" % (report["imbalance"].get("metric", "memory"), report["imbalance"].get("before"),
                                             report["imbalance"].get("after"))]
    if report["downtime_seconds"]:
        lines.append("- downtime: median %.3f s, max %.3f s" % (report["downtime_seconds"]["median"], report["downtime_seconds"]["max"]))
    lines += ["- bytes moved: %d" % report["bytes"], ""]
    if migrations:
        lines += ["| container | source | target | outcome | downtime s | total s | MiB | error |", "|---|---|---|---|---|---|---|---|"]
        for m in migrations:
            lines.append("| %s | %s | %s | %s | %s | %s | %.1f | %s |" % (
                m.get("container"), m.get("source"), m.get("target"), m.get("outcome"), m.get("downtime_seconds", ""),
                m.get("total_seconds", ""), int(m.get("bytes") or 0) / 1048576.0, (m.get("error") or "").replace("|", "/")[:200]))
        lines.append("")
    if report["unplaced"]:
        lines += ["Not placed:", ""] + ["- %s on %s: %s" % (u["container"], u["host"], u["reason"]) for u in report["unplaced"]] + [""]
    lines += ["| host | utilisation before | after |", "|---|---|---|"]
    lines += ["| %s | %.1f%% | %.1f%% |" % (host, 100 * v["before"], 100 * v["after"]) for host, v in sorted(utilisation.items())]
    lines.append("")
    for title, path in sorted(charts.items()):
        lines.append("![%s](%s)" % (title, os.path.basename(path)))
    return "\n".join(lines) + "\n"


def _canvas(width: int, height: int) -> tuple[t.Any, t.Any, t.Any]:
    image = Image.new("RGB", (width, height), "white")
    return image, ImageDraw.Draw(image), ImageFont.load_default(size=13)


def timeline_png(path: str, migrations: list[dict[str, t.Any]]) -> None:
    """One row per migration, a bar from its start to its end, coloured by outcome."""
    timed = [m for m in migrations if m.get("started_at") is not None and m.get("ended_at") is not None]
    start = min(float(m["started_at"]) for m in timed)
    span = max(max(float(m["ended_at"]) for m in timed) - start, 0.001)
    left, row, width = 220, 24, 900
    image, draw, font = _canvas(width, 50 + row * len(timed))
    draw.text((10, 8), "Migrations over time (s from the first start)", fill=COLOURS["text"], font=font)
    for tick in range(0, 11):
        x = left + (width - left - 20) * tick / 10
        draw.line([(x, 30), (x, 30 + row * len(timed))], fill=COLOURS["grid"])
        draw.text((x - 8, 32 + row * len(timed)), ("%.1f" if span < 10 else "%.0f") % (span * tick / 10), fill=COLOURS["text"], font=font)
    for index, m in enumerate(sorted(timed, key=lambda m: float(m["started_at"]))):
        y = 30 + row * index
        x0 = left + (width - left - 20) * (float(m["started_at"]) - start) / span
        x1 = left + (width - left - 20) * (float(m["ended_at"]) - start) / span
        draw.rectangle([x0, y + 4, max(x1, x0 + 2), y + row - 4], fill=COLOURS.get(m.get("outcome"), COLOURS["stranded"]))
        draw.text((10, y + 5), "%s %s>%s" % (m.get("container"), m.get("source"), m.get("target")), fill=COLOURS["text"], font=font)
    image.save(path, "PNG")


def utilisation_png(path: str, utilisation: dict[str, dict[str, float]], metric: str) -> None:
    """Per host, the utilisation before (grey) and after (blue)."""
    hosts = sorted(utilisation)
    left, column, height = 50, max(40, min(120, 900 // max(len(hosts), 1))), 320
    image, draw, font = _canvas(left + column * len(hosts) + 20, height + 60)
    draw.text((10, 8), "%s utilisation per host: before (grey), after (blue)" % metric.capitalize(), fill=COLOURS["text"], font=font)
    top = max([1.0] + [max(v["before"], v["after"]) for v in utilisation.values()])
    for tick in range(0, 5):
        y = 30 + height - height * tick / 4
        draw.line([(left, y), (left + column * len(hosts), y)], fill=COLOURS["grid"])
        draw.text((5, y - 7), "%.0f%%" % (100 * top * tick / 4), fill=COLOURS["text"], font=font)
    for index, host in enumerate(hosts):
        x = left + column * index
        for offset, key in ((0.15, "before"), (0.5, "after")):
            value = utilisation[host][key]
            draw.rectangle([x + column * offset, 30 + height - height * value / top, x + column * (offset + 0.32), 30 + height],
                           fill=COLOURS[key])
        draw.text((x + 4, 36 + height), host[:12], fill=COLOURS["text"], font=font)
    image.save(path, "PNG")


def write(directory: str, job: str, kind: str, migrations: list[dict[str, t.Any]], plan: dict[str, t.Any],
          utilisation: dict[str, dict[str, float]], imbalance: dict[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, str]]:
    """Write the report files; returns (the report: the summary with the migrations, plan and utilisation; paths)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    stem = os.path.join(directory, "%s-%s" % (job, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())))
    report = summary(job, kind, migrations, plan, imbalance)
    charts = {}
    if HAS_PIL:
        if any(m.get("started_at") is not None for m in migrations):
            charts["timeline"] = stem + "-timeline.png"
            timeline_png(charts["timeline"], migrations)
        charts["utilisation"] = stem + "-utilisation.png"
        utilisation_png(charts["utilisation"], utilisation, imbalance.get("metric", "memory"))
    else:
        report["charts_skipped"] = "Pillow is not installed where the report is written"
    paths = dict(charts, json=stem + ".json", markdown=stem + ".md")
    data = dict(report, migrations=migrations, plan=plan, utilisation=utilisation)
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True, default=str)
    with open(paths["markdown"], "w", encoding="utf-8") as handle:
        handle.write(markdown(report, migrations, utilisation, charts))
    return data, paths
