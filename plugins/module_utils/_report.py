# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reports of fleet jobs: a JSON record, a Markdown page and two PNG charts (with matplotlib)."""

from __future__ import annotations

import json
import os
import statistics
import time
import typing as t

try:
    # The object API, not pyplot: no global state, no display, whatever else runs in this process.
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    HAS_MATPLOTLIB = True
except ImportError:
    HAS_MATPLOTLIB = False

COLOURS = {"migrated": "#2e8b57", "already_migrated": "#2e8b57", "refused": "#969696", "rolled_back": "#e69138",
           "stranded": "#cc0000", "before": "#9696aa", "after": "#3465a4"}


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


def timeline_png(path: str, migrations: list[dict[str, t.Any]]) -> None:
    """One row per migration, a bar from its start to its end, coloured by outcome."""
    timed = sorted((m for m in migrations if m.get("started_at") is not None and m.get("ended_at") is not None),
                   key=lambda m: float(m["started_at"]), reverse=True)  # the first at the top
    start = min(float(m["started_at"]) for m in timed)
    figure = Figure(figsize=(9, 1.2 + 0.3 * len(timed)), layout="constrained")
    axes = figure.add_subplot()
    axes.barh(range(len(timed)), [max(float(m["ended_at"]) - float(m["started_at"]), 0.05) for m in timed],
              left=[float(m["started_at"]) - start for m in timed], height=0.6,
              color=[COLOURS.get(m.get("outcome"), COLOURS["stranded"]) for m in timed])
    axes.set_yticks(range(len(timed)), ["%s %s > %s" % (m.get("container"), m.get("source"), m.get("target")) for m in timed])
    axes.set_xlabel("seconds from the first start")
    axes.set_title("Migrations over time")
    axes.grid(axis="x", alpha=0.3)
    outcomes = sorted({m.get("outcome") for m in timed if m.get("outcome") in COLOURS})
    axes.legend(handles=[Patch(color=COLOURS[o], label=o.replace("_", " ")) for o in outcomes],
                loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars, never over them
    figure.savefig(path, format="png", dpi=100)


def utilisation_png(path: str, utilisation: dict[str, dict[str, float]], metric: str) -> None:
    """Per host, the utilisation before and after."""
    hosts = sorted(utilisation)
    figure = Figure(figsize=(max(4.0, 1.0 + 0.8 * len(hosts)), 4), layout="constrained")
    axes = figure.add_subplot()
    for offset, key in ((-0.2, "before"), (0.2, "after")):
        axes.bar([i + offset for i in range(len(hosts))], [100 * utilisation[h][key] for h in hosts], width=0.4,
                 color=COLOURS[key], label=key)
    axes.set_xticks(range(len(hosts)), hosts, rotation=30 if len(hosts) > 8 else 0)
    axes.set_ylabel("%s utilisation (%%)" % metric)
    axes.set_title("%s utilisation per host" % metric.capitalize())
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    figure.savefig(path, format="png", dpi=100)


def write(directory: str, job: str, kind: str, migrations: list[dict[str, t.Any]], plan: dict[str, t.Any],
          utilisation: dict[str, dict[str, float]], imbalance: dict[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, str]]:
    """Write the report files; returns (the report: the summary with the migrations, plan and utilisation; paths)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    stem = os.path.join(directory, "%s-%s" % (job, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())))
    report = summary(job, kind, migrations, plan, imbalance)
    charts = {}
    if HAS_MATPLOTLIB:
        if any(m.get("started_at") is not None for m in migrations):
            charts["timeline"] = stem + "-timeline.png"
            timeline_png(charts["timeline"], migrations)
        charts["utilisation"] = stem + "-utilisation.png"
        utilisation_png(charts["utilisation"], utilisation, imbalance.get("metric", "memory"))
    else:
        report["charts_skipped"] = "matplotlib is not installed where the report is written"
    paths = dict(charts, json=stem + ".json", markdown=stem + ".md")
    data = dict(report, migrations=migrations, plan=plan, utilisation=utilisation)
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True, default=str)
    with open(paths["markdown"], "w", encoding="utf-8") as handle:
        handle.write(markdown(report, migrations, utilisation, charts))
    return data, paths


def run(module: t.Any) -> None:
    """Module ferry.migrate.fleet_report: write a fleet job's report files and return the report."""
    params = module.params
    if not params["job"] or "/" in params["job"] or params["job"].startswith("."):
        module.fail_json(msg="job must be a plain file name prefix, not %r" % params["job"])
    try:
        before, after = params["before"], params["after"]
        utilisation = {host: {"before": before["utilisation"].get(host, 0.0), "after": value} for host, value in after["utilisation"].items()}
        imbalance = {"metric": after.get("metric", "memory"), "before": before["imbalance"], "after": after["imbalance"]}
        report, files = write(params["directory"], params["job"], params["kind"], params["migrations"], params["plan"],
                              utilisation, imbalance)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        module.fail_json(msg="could not write the report in %s: %s" % (params["directory"], exc))
    module.exit_json(changed=True, report=report, files=files)
