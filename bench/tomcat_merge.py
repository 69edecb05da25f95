#!/usr/bin/env python3
"""Puts the in-Tomcat rows (groups tcajp, tchttp) of one or more separate
throughput.py sessions (BENCH_GROUPS=tcajp,tchttp BENCH_OUT=...) into
bench/results/throughput.json, replacing that file's tcajp/tchttp rows and
keeping every other row (the agent-bridge row among them), so that report.py
renders one latest.md. Rounds of several sessions are pooled (renumbered in
order) and the medians and per-round ratios recomputed; a note names the
sessions and their load averages.

usage: bench/tomcat_merge.py SESSION.json [SESSION.json ...]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
import throughput as T  # noqa: E402

GROUPS = ("tcajp", "tchttp")


def main(paths):
    sessions = []
    for p in paths:
        with open(p) as f:
            sessions.append(json.load(f))
    with open(os.path.join(C.RESULTS, "throughput.json")) as f:
        base = json.load(f)
    pooled = {}
    for s in sessions:
        for r in s["results"]:
            if r["group"] not in GROUPS:
                continue
            key = (r["group"], r["size"], r["conns"])
            e = pooled.setdefault(key, {"group": r["group"], "size": r["size"], "size_bytes": r["size_bytes"],
                                        "conns": r["conns"], "variants": r["variants"], "runs": []})
            off = max((x["round"] for x in e["runs"]), default=0)
            for x in r["runs"]:
                e["runs"].append(dict(x, round=x["round"] + off))
    for e in pooled.values():
        med, per_round, ratios = T.summarize(e["runs"], e["variants"])
        e.update({"medians": med, "ratios": ratios, "per_round": per_round})
    rest = [r for r in base["results"] if r["group"] not in GROUPS]
    order = {g: i for i, g in enumerate(["ajp", "http", "tomcat", "tcajp", "tchttp"])}
    base["results"] = sorted(rest + list(pooled.values()),
                             key=lambda r: (order.get(r["group"], 9), r["size"] != "1k", r["conns"]))
    desc = "; ".join(
        f"{s['when']} (load average at the start {' '.join(s['machine'].get('loadavg_at_start') or [])}, "
        f"at the end {' '.join(s['machine'].get('loadavg_at_end') or [])}, {s['settings']['pairs']} rounds)"
        for s in sessions)
    base["notes"] = [n for n in base.get("notes", []) if not n.startswith("In-Tomcat rows (tcajp, tchttp)")]
    base["notes"].append(f"In-Tomcat rows (tcajp, tchttp) from separate sessions, rounds pooled: {desc}. "
                         "The other rows are from the run named at the top.")
    base["in_tomcat_sessions"] = [{"when": s["when"], "loadavg_at_start": s["machine"].get("loadavg_at_start"),
                                   "loadavg_at_end": s["machine"].get("loadavg_at_end"),
                                   "pairs": s["settings"]["pairs"]} for s in sessions]
    for k in ("tunnel", "node_opts", "tomcat_idle"):
        v = sessions[-1]["settings"].get(k)
        if v is not None:
            base["settings"][k] = v
    C.save_json("throughput.json", base)
    C.log(f"merged {len(pooled)} in-Tomcat rows from {len(sessions)} sessions into results/throughput.json")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
