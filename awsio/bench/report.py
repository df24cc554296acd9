"""The engine's results as rows, a printed table, CSV + JSON files and a PNG chart.

Every figure is a median over the rounds, with its range; a loader's ratio to the subject (awsio)
is the median of the per-round ratios of the two (see :mod:`awsio.bench.stats`). The chart shows
each loader's median with its range as an error bar, ranks the loaders (loaders whose rounds do not
agree on an order share a rank) and states the conditions: cores, CPU, load, server, data, rounds,
versions.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import statistics
from typing import Any, Sequence

from awsio.bench import peers
from awsio.bench.engine import Result
from awsio.bench.stats import Summary, paired_ratios, rank_with_ties, summarize

__all__ = ["conditions", "print_table", "rows", "write"]

MiB = 1 << 20
GiB = 1 << 30


def conditions(endpoint: Any, manifest: Any, engine: Any, **more: Any) -> dict[str, Any]:
    """What the figures depend on, recorded with them and printed on the chart."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cores": os.cpu_count(), "cpu": cpu,
            "load_avg_1m": round(load[0], 2), "server": endpoint.label, "data": manifest.description,
            "data_mib": round(manifest.nbytes / MiB, 1), "rounds": engine.rounds, "passes": engine.passes,
            "versions": peers.versions(), "python": platform.python_version(), **more}


def _median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _mib_rates(res: Result, manifest: Any, which: str) -> list[float | None]:
    """MiB/s per round: the data set's bytes per pass (the same work for every loader: members out of
    tar shards and whole shards, bytes and decoded tensors are the same data set; every pass has
    handed out all of it, :meth:`awsio.bench.engine.Engine._agree`)."""
    out: list[float | None] = []
    for r in res.runs:
        if r is None:
            out.append(None)
            continue
        idx = slice(0, 1) if which == "first" else slice(1, None)
        secs = sum(r.pass_s[idx])
        nbytes = manifest.nbytes * len(r.pass_s[idx])
        out.append(nbytes / MiB / secs if secs > 0 else None)
    return out


def rows(results: Sequence[Result], manifest: Any, *, subject: str | None = "awsio", unit: str = "samples",
         workload: str = "") -> list[dict[str, Any]]:
    """One row per case. ``unit`` (``samples`` or ``MiB``) is what ratios and ranks compare.

    The subject's ratio to a case pairs it with the subject case of the same worker count.
    """
    def rates(res: Result, which: str = "first") -> list[float | None]:
        return res.rates(which) if unit == "samples" else _mib_rates(res, manifest, which)

    subjects = {res.case.workers: res for res in results if res.case.peer == subject and res.status == "ok"}
    out = []
    for res in results:
        case = res.case
        row: dict[str, Any] = {"workload": workload or manifest.description, "loader": case.name, "peer": case.peer,
                               "workers": case.workers, "status": res.status, "reason": res.reason,
                               "unit": f"{unit}/s"}
        ok = [r for r in res.runs if r is not None]
        row["rounds"] = len(ok)
        first = summarize([v for v in rates(res) if v is not None])
        _put(row, "rate", first)
        row["rates"] = [None if v is None else round(v, 3) for v in rates(res)]  # per round, for re-analysis
        # a loader that yields whole objects of a data set of samples (the raw reader) has no samples/s
        whole = bool(ok) and manifest.items is not None and ok[0].items[0] != manifest.items
        row["samples_s"] = None if whole else _median(res.rates("first"))
        row["mib_s"] = _median(_mib_rates(res, manifest, "first"))
        row["later_rate"] = _median(rates(res, "later")) if ok and len(ok[0].pass_s) > 1 else None
        ref = subjects.get(case.workers)
        if ref is not None and ref is not res and res.status == "ok":
            _put(row, "ratio", summarize(paired_ratios(rates(ref), rates(res))))
            row["ratio_of"] = ref.case.name
            if row["later_rate"] is not None:  # the subject's first pass to this one's later passes
                _put(row, "later_ratio", summarize(paired_ratios(rates(ref), rates(res, "later"))))
        if ok:
            gib = [manifest.nbytes * len(r.pass_s) / GiB for r in ok]
            row["cpu_s_per_gib"] = statistics.median(r.cpu_s / g for r, g in zip(ok, gib))
            # a loader that reads only in its untimed setup (the in-memory ceiling) serves nothing timed
            server = [r.server_cpu_s / g for r, g in zip(ok, gib)
                      if r.server_cpu_s is not None and peers.get(case.peer).reads_in_run]
            row["server_cpu_s_per_gib"] = statistics.median(server) if server else None
            row["peak_mib"] = statistics.median(r.rss_peak_mib for r in ok)
            row["first_sample_s"] = _median([r.first_s for r in ok])
            for key in sorted({k for r in ok for k in r.extras}):
                vals = [r.extras[key] for r in ok if isinstance(r.extras.get(key), (int, float))]
                _put(row, key, summarize(vals))
        for key in ("GET", "GET_RANGED", "HEAD", "LIST", "OTHER"):
            row[key] = (res.census or {}).get(key, 0) if res.census is not None else None
        row["wire_mib"] = res.census.get("wire_bytes", 0) / MiB if res.census is not None else None
        row["conversion_s"] = res.conversion.seconds if res.conversion else None
        row["conversion_note"] = res.conversion.note if res.conversion else ""
        out.append(row)
    _rank(out, results, rates)
    return out


def _put(row: dict[str, Any], key: str, s: Summary | None) -> None:
    row[key] = s.median if s else None
    row[f"{key}_lo"] = s.lo if s else None
    row[f"{key}_hi"] = s.hi if s else None


def _rank(out: list[dict[str, Any]], results: Sequence[Result], rates: Any) -> None:
    """``rank`` per worker count: 1 for the fastest; loaders the rounds cannot separate share one."""
    for workers in sorted({r.case.workers for r in results}):
        group = {res.case.name: res for res in results if res.case.workers == workers and res.status == "ok"}
        medians: dict[str, float] = {}
        for n, res in group.items():
            m = _median(rates(res))
            if m is not None:
                medians[n] = m
        names = sorted(medians, key=lambda n: -medians[n])
        spreads = {}
        for a, b in zip(names, names[1:]):
            s = summarize(paired_ratios(rates(group[a]), rates(group[b])))
            if s is not None:
                spreads[(a, b)] = s
        for rank, members in enumerate(rank_with_ties(medians, spreads), start=1):
            for row in out:
                if row["loader"] in members and row["workers"] == workers:
                    row["rank"] = rank
                    row["tied"] = len(members) > 1


def _fmt(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def _range(row: dict[str, Any], key: str, spec: str) -> str:
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is None or hi is None or row.get("rounds", 0) < 2:
        return ""
    return f" ({format(lo, spec)}-{format(hi, spec)})"


def print_table(table: Sequence[dict[str, Any]], title: str) -> None:
    """The rows as a console table (medians; ranges over the rounds in brackets)."""
    print(f"\n{title}")
    unit = table[0]["unit"] if table else "samples/s"
    print(f"  {'loader':26} {'rank':>4} {unit + ' (range)':>24} {'samples/s':>10} {'MiB/s':>8} {'later':>8} "
          f"{'awsio x (range)':>18} {'CPU s/GiB':>9} {'srv s/GiB':>9} {'peak MiB':>8} {'1st s':>6} "
          f"{'GET/HEAD/LIST':>14} {'conv s':>7}")
    for r in table:
        if r["status"] != "ok":
            print(f"  {r['loader']:26} {r['status']}: {r['reason']}")
            continue
        rate = _fmt(r["rate"], ".1f") + _range(r, "rate", ".0f")
        ratio = (_fmt(r.get("ratio"), ".2f") + _range(r, "ratio", ".2f")) if r.get("ratio") is not None else ""
        reqs = "-" if r["GET"] is None else f"{r['GET']}/{r['HEAD']}/{r['LIST']}"
        conv = _fmt(r["conversion_s"], ".1f") if r["conversion_s"] is not None else (
            "earlier" if r["conversion_note"] else "none")
        rank = f"{r.get('rank', '-')}{'=' if r.get('tied') else ''}"
        print(f"  {r['loader']:26} {rank:>4} {rate:>24} {_fmt(r['samples_s'], '.0f'):>10} {_fmt(r['mib_s'], '.0f'):>8} "
              f"{_fmt(r['later_rate'], '.0f'):>8} {ratio:>18} {_fmt(r.get('cpu_s_per_gib'), '.2f'):>9} "
              f"{_fmt(r.get('server_cpu_s_per_gib'), '.2f'):>9} {_fmt(r.get('peak_mib'), '.0f'):>8} "
              f"{_fmt(r.get('first_sample_s'), '.2f'):>6} {reqs:>14} {conv:>7}")
        if "samples_per_s" in r or "data_wait" in r:
            print(f"  {'':26} training: {_fmt(r.get('samples_per_s'), '.0f')}{_range(r, 'samples_per_s', '.0f')} "
                  f"samples/s, data wait {_fmt(100 * r['data_wait'] if r.get('data_wait') is not None else None, '.0f')}%"
                  f"{_range({k: (v * 100 if isinstance(v, float) else v) for k, v in r.items()}, 'data_wait', '.0f')}")


def write(table: Sequence[dict[str, Any]], cond: dict[str, Any], out_dir: str, name: str, *,
          title: str, chart: bool = True, png: str = "") -> list[str]:
    """``<name>.csv``, ``<name>.json`` (rows + conditions) and the chart (``png``, default
    ``<name>.png``) in ``out_dir``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"{name}.{ext}") for ext in ("csv", "json")]
    paths.append(os.path.join(out_dir, png or f"{name}.png"))
    fields = list(dict.fromkeys(k for r in table for k in r))
    with open(paths[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(table)
    with open(paths[1], "w") as f:
        json.dump({"conditions": cond, "rows": list(table)}, f, indent=1, default=str)
    if not chart:
        return paths[:2]
    chart_png(table, cond, paths[2], title)
    return paths


def chart_png(table: Sequence[dict[str, Any]], cond: dict[str, Any], path: str, title: str) -> None:
    """Horizontal bars: each loader's median (first pass) with its range, one panel per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({r["workers"] for r in table})
    heights = [max(1, sum(1 for r in table if r["workers"] == w)) for w in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 1.3 + 0.42 * sum(heights) + 0.5 * len(groups)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    unit = table[0]["unit"] if table else "samples/s"
    for ax, workers in zip(axes[:, 0], groups):
        group = [r for r in table if r["workers"] == workers]
        group.sort(key=lambda r: (r["status"] != "ok", -(r["rate"] or 0)))
        ys = list(range(len(group)))[::-1]
        for y, r in zip(ys, group):
            if r["status"] != "ok" or r["rate"] is None:
                ax.text(0, y, f"  {r['status']}: {r['reason'][:70]}", va="center", fontsize=7, color="0.4")
                continue
            lo, hi = r.get("rate_lo") or r["rate"], r.get("rate_hi") or r["rate"]
            colour = "tab:orange" if r["peer"].startswith("awsio") else "tab:blue"
            ax.barh(y, r["rate"], color=colour, alpha=0.85,
                    xerr=[[r["rate"] - lo], [hi - r["rate"]]], capsize=3, error_kw={"elinewidth": 1})
            note = f"#{r.get('rank', '?')}{'=' if r.get('tied') else ''}  {r['rate']:,.0f}"
            if r.get("ratio") is not None:
                note += f"   awsio {r['ratio']:.2f}x" + (f" ({r['ratio_lo']:.2f}-{r['ratio_hi']:.2f})"
                                                        if r.get("rounds", 0) > 1 else "")
            if r.get("conversion_s") or r.get("conversion_note"):
                conv = r["conversion_s"]
                note += f"   +{conv:.0f} s conversion" if conv else "   (converted once)"
            ax.text(hi, y, "  " + note, va="center", fontsize=7)
        ax.set_yticks(ys, [r["loader"] for r in group], fontsize=8)
        ax.set_xlabel(f"{unit}, first pass in a fresh process (bar: median of {cond.get('rounds')} rounds; "
                      "line: min-max)" if workers == groups[-1] else "", fontsize=8)
        ax.set_title(f"DataLoader workers: {workers}" if len(groups) > 1 else "", fontsize=8, loc="left")
        ax.margins(x=0.45)
        ax.tick_params(axis="x", labelsize=7)
    versions = ", ".join(f"{k} {v}" for k, v in cond.get("versions", {}).items())
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    foot = (f"{cond.get('data')} ({cond.get('data_mib')} MiB), {cond.get('passes')} pass(es) per run; "
            f"{cond.get('cores')} cores ({cond.get('cpu')}), load {cond.get('load_avg_1m')} at start; "
            f"server: {cond.get('server')}; {cond.get('date')}\n{versions}")
    fig.text(0.01, 0.005, foot, fontsize=6, va="bottom", ha="left", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
