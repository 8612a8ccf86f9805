"""The benchmark's bookkeeping (called by bench/run; see bench/README.md).

    analyze.py record KEY --out DIR --log PROXY_LOG --skip LINES --t0 EPOCH --t1 EPOCH
                      [--time-file F] [--policy-file F] [--cpu-file F] [--set k=v ...]
        summarizes the proxy log lines after the first LINES (the requests of one measured
        command, run from t0 to t1) into DIR/raw/KEY.json, with the command's /usr/bin/time
        figures (wall, user, sys, max RSS), the archive policy check and the CPU seconds the
        emulator and the proxy used meanwhile.
    analyze.py policy --endpoint URL --bucket B --out F ACCOUNT...
        reads the archive bucket policy (directly from the emulator, as 111111111111) and
        checks that both statements name every ACCOUNT's S3ReplicationRole (no lost principal).
    analyze.py report --out DIR
        merges DIR/raw/*.json into DIR/results.json and DIR/results.md and prints the tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import re
import subprocess
import sys

S3_METHOD = re.compile(r"^(GET|HEAD|PUT|POST|DELETE|PATCH) ")
# Query/JSON-protocol operations that change state (AssumeRole only mints credentials).
MUTATING_OPS = re.compile(
    r"^(Create|Put|Update|Delete|Start|Stop|Attach|Detach|Tag|Untag|Set|Enable|Disable|Add|Remove|"
    r"Upload|Modify|Execute|Cancel|Continue|Signal|Rollback|Restore|Register|Deregister)"
)


def is_mutating(action: str | None) -> bool:
    if not action:
        return False
    m = S3_METHOD.match(action)
    if m:
        return m.group(1) in ("PUT", "POST", "DELETE", "PATCH")
    return bool(MUTATING_OPS.match(action))


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100.0 * (len(values) - 1))))
    return values[k]


def summarize_log(path: str, skip: int, delay_ms: float, stack_ms: float, t0: float, t1: float) -> dict:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= skip and line.strip():
                rows.append(json.loads(line))
    rows = [r for r in rows if not r["path"].startswith("/moto-api")]
    by_action: dict[str, int] = {}
    for r in rows:
        by_action[r["action"]] = by_action.get(r["action"], 0) + 1
    mutating = [r for r in rows if is_mutating(r["action"]) and r.get("status") is not None and r["status"] < 400]
    mutating_by_action: dict[str, int] = {}
    for r in mutating:
        mutating_by_action[r["action"]] = mutating_by_action.get(r["action"], 0) + 1
    # time spent past the modelled latency: the emulator's service time plus queueing
    upstream = []
    for r in rows:
        extra = delay_ms + (stack_ms if r["action"] == "CreateStack" else 0.0)
        if r.get("fault") is None:
            upstream.append(max(0.0, r["ms"] - extra))
    # requests in flight at the proxy (sweep over start/end events)
    events = []
    for r in rows:
        events.append((r["t"], 1))
        events.append((r["t"] + r["ms"] / 1000.0, -1))
    events.sort()
    inflight = peak = 0
    for _, d in events:
        inflight += d
        peak = max(peak, inflight)
    wall = t1 - t0
    first = min((r["t"] for r in rows), default=None)
    last_end = max((r["t"] + r["ms"] / 1000.0 for r in rows), default=None)
    return {
        "requests": len(rows),
        "put_bucket_policy": by_action.get("PUT ?policy", 0),
        "mutating_requests": len(mutating),
        "mutating_by_action": dict(sorted(mutating_by_action.items())),
        "by_action": dict(sorted(by_action.items(), key=lambda kv: (-kv[1], kv[0]))),
        "errors_4xx_5xx": sum(1 for r in rows if r.get("status") is not None and r["status"] >= 400),
        "errors_by_action": _count(r["action"] + " " + str(r["status"]) for r in rows
                                   if r.get("status") is not None and r["status"] >= 400),
        "faults": sum(1 for r in rows if r.get("fault")),
        "request_ms_sum": round(sum(r["ms"] for r in rows), 1),
        "inflight_mean": round(sum(r["ms"] for r in rows) / 1000.0 / wall, 2) if wall > 0 else None,
        "inflight_peak": peak,
        "upstream_ms_mean": round(sum(upstream) / len(upstream), 1) if upstream else None,
        "upstream_ms_p50": _round(percentile(upstream, 50)),
        "upstream_ms_p95": _round(percentile(upstream, 95)),
        "upstream_ms_max": _round(max(upstream) if upstream else None),
        "first_request_after_s": round(first - t0, 3) if first is not None else None,
        "exit_after_last_response_s": round(t1 - last_end, 3) if last_end is not None else None,
    }


def summarize_history(path: str) -> dict:
    """Per step (identity, role-stack, grant, ...): attempts and durations, from `trailhub history
    --output json` (attempt-started -> node-done / failure), and each account's span."""
    starts: dict[str, int] = {}
    durations: dict[str, list[float]] = {}
    attempts: dict[str, int] = {}
    span: dict[str, list[int]] = {}
    first = last = None
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        ev = json.loads(line)
        if ev.get("type") != "event" or not ev.get("node"):
            continue
        node, kind, at = ev["node"], ev["event"].get("type"), ev.get("at_ms")
        account, _, step = node.partition("/")
        step = step if account != "archive" else node
        if "grant/" in step:
            step = "archive/grant"
        first = at if first is None else min(first, at)
        last = at if last is None else max(last, at)
        if kind == "attempt-started":
            starts[node] = at
            attempts[step] = attempts.get(step, 0) + 1
            if account not in ("archive",):
                span.setdefault(account, [at, at])[1] = at
        elif kind in ("node-done", "node-failed", "attempt-failed") and node in starts:
            durations.setdefault(step, []).append(at - starts.pop(node))
            if account not in ("archive",):
                span.setdefault(account, [at, at])[1] = at
    out: dict = {}
    for step, ds in sorted(durations.items()):
        out[step] = {"attempts": attempts.get(step, 0), "ms_mean": round(sum(ds) / len(ds), 1),
                     "ms_p50": _round(percentile(ds, 50)), "ms_max": _round(max(ds))}
    spans = [b - a for a, b in span.values()]
    if spans:
        out["_account_span_ms"] = {"mean": round(sum(spans) / len(spans), 1), "max": max(spans)}
    if first is not None:
        out["_run_ms"] = last - first
    return out


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def cmd_record(args: argparse.Namespace) -> None:
    extra: dict = {}
    for kv in args.set or []:
        k, v = kv.split("=", 1)
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
    entry: dict = {"key": args.key, **extra}
    entry["wall_s"] = round(args.t1 - args.t0, 3)
    if args.time_file and os.path.exists(args.time_file):
        # /usr/bin/time -f '%e %U %S %M' (the last line: the command's own output may precede it)
        lines = [line.split() for line in open(args.time_file) if line.strip()]
        fields = next((line for line in reversed(lines) if len(line) == 4), None)
        if fields:
            entry["time_wall_s"] = float(fields[0])
            entry["user_s"] = float(fields[1])
            entry["sys_s"] = float(fields[2])
            entry["max_rss_kb"] = int(fields[3])
    if args.cpu_file and os.path.exists(args.cpu_file):
        entry.update(json.load(open(args.cpu_file)))
    entry.update(summarize_log(args.log, args.skip, float(entry.get("delay_ms", 0)),
                               float(entry.get("create_stack_delay_ms", 0)), args.t0, args.t1))
    if args.policy_file and os.path.exists(args.policy_file):
        entry["policy"] = json.load(open(args.policy_file))
    if "machine_busy_cpu_s" in entry:
        ours = (entry.get("user_s") or 0) + (entry.get("sys_s") or 0) + entry.get("emulator_cpu_s", 0) \
            + entry.get("proxy_cpu_s", 0)
        entry["other_cpu_s"] = round(max(0.0, entry["machine_busy_cpu_s"] - ours), 2)
    if str(entry.get("kind", "")).startswith("article"):
        entry.pop("max_rss_kb", None)  # the largest CLI process's, not a figure of interest
    if args.history and os.path.exists(args.history):
        entry["steps"] = summarize_history(args.history)
    entry["measured_at"] = dt.datetime.fromtimestamp(args.t0, dt.timezone.utc).isoformat(timespec="seconds")
    os.makedirs(os.path.join(args.out, "raw"), exist_ok=True)
    with open(os.path.join(args.out, "raw", args.key.replace("/", "_") + ".json"), "w") as f:
        json.dump(entry, f, indent=1)
    print(f"  {args.key}: {entry['wall_s']:.2f} s, {entry['requests']} requests, "
          f"{entry['put_bucket_policy']} PutBucketPolicy, {entry['mutating_requests']} mutating"
          + (f", max RSS {entry['max_rss_kb'] / 1024:.1f} MB" if "max_rss_kb" in entry else "")
          + f", exit {entry.get('exit_code')}")


def cmd_policy(args: argparse.Namespace) -> None:
    import boto3  # the emulator's venv has it

    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name="ap-northeast-1",
                      aws_access_key_id="111111111111", aws_secret_access_key="x")
    # Accounts mode names each account's root, its condition the role name (checked below).
    if args.policy == "accounts":
        expected = {f"arn:aws:iam::{a}:root" for a in args.accounts}
    else:
        expected = {f"arn:aws:iam::{a}:role/S3ReplicationRole" for a in args.accounts}
    out: dict = {"expected_principals": len(expected)}
    try:
        text = s3.get_bucket_policy(Bucket=args.bucket)["Policy"]
    except Exception as e:  # noqa: BLE001 - reported, not raised
        out.update({"error": str(e), "lost_principals": len(expected)})
    else:
        doc = json.loads(text)
        out["bytes"] = len(text.encode())
        out["bytes_compact"] = len(json.dumps(doc, separators=(",", ":")).encode())
        per_statement = {}
        lost: set[str] = set()
        for st in doc.get("Statement", []):
            aws = st.get("Principal", {}).get("AWS", []) if isinstance(st.get("Principal"), dict) else []
            aws = [aws] if isinstance(aws, str) else aws
            per_statement[st.get("Sid", "?")] = len(aws)
        for wanted_actions in ("s3:ReplicateObject", "s3:GetBucketVersioning"):
            names: set[str] = set()
            for st in doc.get("Statement", []):
                acts = st.get("Action", [])
                acts = [acts] if isinstance(acts, str) else acts
                cond = (st.get("Condition") or {}).get("ArnLike", {}).get("aws:PrincipalArn")
                if args.policy == "accounts" and cond != "arn:aws:iam::*:role/S3ReplicationRole":
                    continue
                if wanted_actions in acts:
                    aws = st.get("Principal", {}).get("AWS", [])
                    names |= set([aws] if isinstance(aws, str) else aws)
            lost |= expected - names
        out["principals_per_statement"] = per_statement
        out["lost_principals"] = len(lost)
        if lost:
            out["lost_examples"] = sorted(lost)[:5]
    with open(args.out, "w") as f:
        json.dump(out, f)


# --- the report ------------------------------------------------------------------------------------
TARGETS = {
    "t_ratio": ("T(N)/T(1)", "<= 1.5"),
    "seq_ratio": ("article sequential(N) / trailhub(N)", ">= 50"),
    "par_ratio": ("article parallel-shell(N) / trailhub(N)", "> 1"),
    "reapply": ("re-apply(N): mutating requests; wall / T(1)", "0; <= 1"),
    "policy": ("PutBucketPolicy calls for N grants", "far fewer than N, no lost principal"),
    "big": ("big run: completes, peak RSS", "exit 0, <= 150 MB"),
}


def fmt(v, digits=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_mb"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return info


def cmd_report(args: argparse.Namespace) -> None:
    # Repetitions of one measurement (same kind, N, concurrency; bench/run --repeat) are reduced to
    # the one with the median wall time, from the newest invocation that measured it.
    groups: dict[tuple, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(args.out, "raw", "*.json"))):
        e = json.load(open(path))
        groups.setdefault((e.get("kind"), e.get("n"), e.get("concurrency")), []).append(e)
    entries = {}
    for members in groups.values():
        newest = max(m.get("run_id", "") for m in members)
        members = sorted((m for m in members if m.get("run_id", "") == newest), key=lambda m: m["wall_s"])
        rep = dict(members[(len(members) - 1) // 2])
        rep["repeats"] = len(members)
        rep["wall_s_all"] = [m["wall_s"] for m in members]
        rep["repeat_keys"] = [m["key"] for m in members]
        entries[rep["key"]] = rep
    meta_path = os.path.join(args.out, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}

    def get(kind: str, n: int, conc: int | None = None):
        for e in entries.values():
            if e.get("kind") == kind and e.get("n") == n and (conc is None or e.get("concurrency") == conc):
                return e
        return None

    default_c = meta.get("default_concurrency", 64)
    sizes = sorted({e["n"] for e in entries.values() if e.get("kind") == "trailhub" and e.get("concurrency") == default_c})
    ratios: dict = {}
    checks: list[tuple[str, str, str, str]] = []
    base = get("trailhub", 1, default_c)
    for n in sizes:
        t = get("trailhub", n, default_c)
        r: dict = {"n": n}
        if base and t and n != 1:
            r["t_n_over_t_1"] = round(t["wall_s"] / base["wall_s"], 2)
        seq, par, re_ = get("article-seq", n), get("article-par", n), get("trailhub-reapply", n, default_c)
        if seq and t:
            r["article_seq_over_trailhub"] = round(seq["wall_s"] / t["wall_s"], 1)
        if par and t:
            r["article_par_over_trailhub"] = round(par["wall_s"] / t["wall_s"], 2)
        if re_ and base:
            r["reapply_over_t_1"] = round(re_["wall_s"] / base["wall_s"], 2)
        if re_:
            r["reapply_mutating"] = re_["mutating_requests"]
        if t:
            r["put_bucket_policy"] = t["put_bucket_policy"]
            r["lost_principals"] = (t.get("policy") or {}).get("lost_principals")
        ratios[f"N={n}"] = r
    top = max(sizes) if sizes else None
    if top:
        r = ratios[f"N={top}"]
        t = get("trailhub", top, default_c)
        if "t_n_over_t_1" in r:
            checks.append((f"T({top})/T(1)", "<= 1.5", fmt(r["t_n_over_t_1"]), "met" if r["t_n_over_t_1"] <= 1.5 else "NOT met"))
        if "article_seq_over_trailhub" in r:
            v = r["article_seq_over_trailhub"]
            checks.append((f"article sequential({top}) / trailhub({top})", ">= 50", fmt(v, 1), "met" if v >= 50 else "NOT met"))
        if "article_par_over_trailhub" in r:
            v = r["article_par_over_trailhub"]
            checks.append((f"article parallel-shell({top}) / trailhub({top})", "> 1", fmt(v), "met" if v > 1 else "NOT met"))
        if "reapply_mutating" in r:
            ok = r["reapply_mutating"] == 0 and r.get("reapply_over_t_1", 99) <= 1
            checks.append((f"re-apply({top}): mutating requests; wall / T(1)", "0; <= 1",
                           f"{r['reapply_mutating']}; {fmt(r.get('reapply_over_t_1'))}", "met" if ok else "NOT met"))
        if t:
            lost = r.get("lost_principals")
            ok = t["put_bucket_policy"] < top / 2 and lost == 0 if top > 2 else lost == 0
            checks.append((f"PutBucketPolicy for {top} grants; lost principals", "far fewer than N; 0",
                           f"{t['put_bucket_policy']}; {fmt(lost)}", "met" if ok else "NOT met"))
    for n in sizes:
        local, shared = get("trailhub", n, default_c), get("trailhub-s3", n, default_c)
        if local and shared:
            v = round(shared["wall_s"] / local["wall_s"], 2)
            ratios[f"N={n}"]["s3_state_over_local"] = v
            checks.append((f"T({n}) s3 state / T({n}) local", "<= 1.15", fmt(v), "met" if v <= 1.15 else "NOT met"))
        re_s3 = get("trailhub-s3-reapply", n, default_c)
        if re_s3 and re_s3.get("state_requests") is not None:
            v = re_s3["state_requests"]
            checks.append((f"re-apply({n}) with s3 state: state requests", "<= 2", str(v), "met" if v <= 2 else "NOT met"))
    big = [e for e in entries.values() if e.get("kind") == "big"]
    for b in big:
        rss = b.get("max_rss_kb")
        ok = b.get("exit_code") == 0 and rss is not None and rss <= 150 * 1024
        checks.append((f"{b['n']} accounts, no delay: exit; peak RSS", "0; <= 150 MB",
                       f"{b.get('exit_code')}; {fmt(rss / 1024 if rss else None, 1)} MB", "met" if ok else "NOT met"))

    results = {
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": meta.get("command"),
        "machine": machine(),
        "trailhub": meta.get("trailhub"),
        "latency_model": meta.get("latency_model"),
        "entries": entries,
        "ratios": ratios,
        "targets": [dict(zip(("target", "wanted", "measured", "verdict"), c)) for c in checks],
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    order = {"trailhub": 0, "trailhub-reapply": 1, "trailhub-s3": 2, "trailhub-s3-reapply": 3,
             "article-seq": 4, "article-par": 5, "big": 6, "big-reapply": 7}
    rows = sorted(entries.values(), key=lambda e: (e.get("kind") in ("big", "big-reapply"), e.get("n", 0),
                                                   order.get(e.get("kind"), 9), e.get("concurrency") or 0))
    head = ["measurement", "N", "conc", "wall s", "exit", "requests", "PutBucketPolicy", "mutating",
            "peak RSS MB", "client CPU s", "emulator CPU s", "in-flight mean/peak", "emulator ms p50/p95",
            "other CPU s", "policy principals", "run"]
    table = []
    for e in rows:
        pol = e.get("policy") or {}
        per = pol.get("principals_per_statement") or {}
        table.append([
            e.get("label", e["key"]), str(e.get("n")), fmt(e.get("concurrency")),
            fmt(e["wall_s"]) + (f" (median of {', '.join(fmt(w) for w in e['wall_s_all'])})" if e["repeats"] > 1 else ""),
            fmt(e.get("exit_code")),
            str(e["requests"]) + (f" ({e['state_requests']} state)" if e.get("state_requests") else ""),
            str(e["put_bucket_policy"]), str(e["mutating_requests"]),
            fmt(e["max_rss_kb"] / 1024, 1) if e.get("max_rss_kb") else "-",
            fmt((e.get("user_s") or 0) + (e.get("sys_s") or 0), 1) if "user_s" in e else "-",
            fmt(e.get("emulator_cpu_s"), 1),
            f"{fmt(e.get('inflight_mean'), 1)}/{e.get('inflight_peak')}",
            f"{fmt(e.get('upstream_ms_p50'), 0)}/{fmt(e.get('upstream_ms_p95'), 0)}",
            fmt(e.get("other_cpu_s"), 1),
            (f"{min(per.values())}/{pol.get('expected_principals')}" if per else ("-" if not pol else "none"))
            + (f" ({pol.get('bytes_compact')} B)" if pol.get("bytes_compact") else ""),
            e.get("run_id", "-"),
        ])
    md = [f"# Benchmark results\n",
          f"Generated {results['generated']} by `{results.get('command') or 'bench/run'}` "
          f"on {results['machine'].get('cpu', '?')} ({results['machine'].get('nproc')} CPUs, "
          f"{results['machine'].get('mem_mb', '?')} MB).",
          f"trailhub: {json.dumps(results.get('trailhub'))}; latency model: {json.dumps(results.get('latency_model'))}.",
          "What each column means: bench/README.md.\n",
          "## Measurements\n", md_table(head, table), "", "## Ratios (same machine; see the run column)\n"]
    rhead = ["N", "T(N)/T(1)", "article-seq/trailhub", "parallel-shell/trailhub", "re-apply/T(1)",
             "re-apply mutating", "PutBucketPolicy", "lost principals"]
    rtable = [[str(v["n"]), fmt(v.get("t_n_over_t_1")), fmt(v.get("article_seq_over_trailhub"), 1),
               fmt(v.get("article_par_over_trailhub")), fmt(v.get("reapply_over_t_1")),
               fmt(v.get("reapply_mutating")), fmt(v.get("put_bucket_policy")), fmt(v.get("lost_principals"))]
              for v in ratios.values()]
    md += [md_table(rhead, rtable), "", "## Issue 6 targets\n",
           md_table(["target", "wanted", "measured", "verdict"], [list(c) for c in checks]), ""]
    conc = [e for e in entries.values() if e.get("kind") == "trailhub" and e.get("concurrency") != default_c]
    if conc:
        md += ["## trailhub apply by --concurrency\n"]
        crow = []
        for e in sorted([x for x in entries.values() if x.get("kind") == "trailhub"],
                        key=lambda x: (x["n"], x.get("concurrency") or 0)):
            if e["n"] in {c["n"] for c in conc}:
                crow.append([str(e["n"]), str(e.get("concurrency")), fmt(e["wall_s"]), str(e["requests"]),
                             str(e["put_bucket_policy"]), fmt(e["max_rss_kb"] / 1024, 1) if e.get("max_rss_kb") else "-",
                             fmt(e.get("emulator_cpu_s"), 1)])
        md += [md_table(["N", "--concurrency", "wall s", "requests", "PutBucketPolicy", "peak RSS MB", "emulator CPU s"], crow), ""]
    th = sorted([e for e in entries.values() if e.get("kind") in ("trailhub", "big") and e.get("steps")],
                key=lambda e: (e["kind"] == "big", e["n"], e.get("concurrency") or 0))
    if th:
        md += ["## trailhub: time per step (from `trailhub history`; mean / max ms; attempts)\n"]
        steps = []
        for e in th:
            for k in e["steps"]:
                if not k.startswith("_") and k not in steps:
                    steps.append(k)
        cols = [f"N={e['n']} c={e.get('concurrency')}" + (" no delay" if e["kind"] == "big" else "") for e in th]
        srows = []
        for st in steps:
            row = [st]
            for e in th:
                v = e["steps"].get(st)
                row.append(f"{v['ms_mean']:.0f} / {v['ms_max']:.0f}; {v['attempts']}" if v else "-")
            srows.append(row)
        srows.append(["account span (first start -> last end)"] + [
            f"{e['steps']['_account_span_ms']['mean']:.0f} / {e['steps']['_account_span_ms']['max']:.0f}"
            if "_account_span_ms" in e["steps"] else "-" for e in th])
        srows.append(["wall s; first request after s; exit after last response s"] + [
            f"{e['wall_s']:.2f}; {fmt(e.get('first_request_after_s'))}; {fmt(e.get('exit_after_last_response_s'))}" for e in th])
        md += [md_table(["step"] + cols, srows), ""]
    text = "\n".join(md)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")
    print(text)


def md_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("key")
    r.add_argument("--out", required=True)
    r.add_argument("--log", required=True)
    r.add_argument("--skip", type=int, default=0)
    r.add_argument("--t0", type=float, required=True)
    r.add_argument("--t1", type=float, required=True)
    r.add_argument("--time-file")
    r.add_argument("--policy-file")
    r.add_argument("--cpu-file")
    r.add_argument("--history")
    r.add_argument("--set", action="append")
    q = sub.add_parser("policy")
    q.add_argument("--endpoint", required=True)
    q.add_argument("--bucket", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--policy", default="article", help="the inventory's policy mode")
    q.add_argument("accounts", nargs="+")
    s = sub.add_parser("report")
    s.add_argument("--out", required=True)
    args = p.parse_args()
    {"record": cmd_record, "policy": cmd_policy, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
