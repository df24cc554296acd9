"""The benchmark engine's statistics and bookkeeping, without a server: round order, paired ratios,
ranks with ties, sample counting, the counting proxy's request kinds, and the report's ratios."""

from __future__ import annotations

import pytest

from awsio.bench.engine import Case, Counted, Result, Run
from awsio.bench.proxy import classify
from awsio.bench.stats import Summary, paired_ratios, rank_with_ties, round_order, summarize
from awsio.bench.worker import count


def test_round_order_alternates_so_every_case_runs_first_and_last():
    cases = ["a", "b", "c"]
    orders = [round_order(cases, r) for r in range(4)]
    assert orders == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"], ["c", "b", "a"]]
    firsts = [o[0] for o in orders]
    assert firsts.count("a") == firsts.count("c") == 2  # neither end always goes first


def test_paired_ratios_pair_rounds_not_best_ofs():
    # The machine slowed down in round 2 for everyone: paired per round, "a" is steadily 2x "b";
    # a ratio of the two best-ofs (or of the medians of each) would say something else.
    a = [200.0, 100.0, 210.0]
    b = [100.0, 50.0, 105.0]
    assert paired_ratios(a, b) == [2.0, 2.0, 2.0]
    s = summarize(paired_ratios(a, b))
    assert s == Summary(2.0, 2.0, 2.0, 3)
    # a round where one side failed is left out, never shifted onto another round
    assert paired_ratios([200.0, None, 210.0], [100.0, 50.0, 70.0]) == [2.0, 3.0]
    with pytest.raises(ValueError, match="one value per round"):
        paired_ratios([1.0], [1.0, 2.0])


def test_median_of_paired_ratios_and_spread():
    s = summarize(paired_ratios([10.0, 30.0, 12.0, 20.0, 9.0], [10.0, 10.0, 10.0, 10.0, 10.0]))
    assert s is not None
    assert (s.median, s.lo, s.hi, s.n) == (1.2, 0.9, 3.0, 5)  # median, not mean (1.62)
    assert s.spread() == "0.90-3.00"
    assert summarize([]) is None


def test_rank_with_ties_when_rounds_disagree():
    medians = {"fast": 100.0, "b": 60.0, "c": 58.0, "slow": 10.0}
    spreads = {("fast", "b"): Summary(1.6, 1.5, 1.8, 3),
               ("b", "c"): Summary(1.03, 0.95, 1.1, 3),   # rounds disagree: b and c share a rank
               ("c", "slow"): Summary(5.8, 5.0, 6.0, 3)}
    assert rank_with_ties(medians, spreads) == [["fast"], ["b", "c"], ["slow"]]
    spreads[("b", "c")] = Summary(1.03, 1.01, 1.1, 3)  # every round puts b first, but by 3 %: a tie
    assert rank_with_ties(medians, spreads) == [["fast"], ["b", "c"], ["slow"]]
    spreads[("b", "c")] = Summary(1.3, 1.2, 1.4, 3)  # every round puts b first, by 20-40 %
    assert rank_with_ties(medians, spreads) == [["fast"], ["b"], ["c"], ["slow"]]


def test_count_samples_in_what_loaders_yield():
    assert count(b"xyz") == (1, 3)
    assert count(5) == (1, 5)
    assert count(("a.bin", b"12345")) == (1, 5)
    assert count(["a.bin", b"12345"]) == (1, 5)          # a DataLoader turns tuples into lists
    assert count([b"12", b"345"]) == (2, 5)              # a batch of objects
    assert count({"__key__": "k", "jpg": b"1234", "cls": b"1"}) == (1, 5)
    assert count({"name": ["a", "b"], "data": [b"1", b"22"]}) == (2, 3)
    assert count(Counted(640)) == (640, 0)
    torch = pytest.importorskip("torch")
    assert count((torch.zeros(4, 3, 8, 8), torch.arange(4))) == (4, 0)
    assert count(([b"12", b"3"], [0, 1])) == (2, 3)
    with pytest.raises(TypeError):
        count(object())


def test_proxy_classifies_path_style_requests():
    assert classify("GET", "/bucket/some/key.tar") == "GET"
    assert classify("GET", "/bucket?list-type=2&prefix=a") == "LIST"
    assert classify("GET", "/bucket/") == "LIST"
    assert classify("HEAD", "/bucket/k") == "HEAD"
    assert classify("PUT", "/bucket/k") == "OTHER"


def _result(peer: str, rates: list[float | None], workers: int = 0) -> Result:
    runs = [None if r is None else Run(pass_s=[1.0], items=[int(r)], nbytes=[int(r) << 20], first_s=0.1,
                                       cpu_s=0.5, rss_peak_mib=10.0) for r in rates]
    return Result(Case(peer, workers), runs=runs)


def test_report_ratio_is_the_median_of_paired_ratios():
    from awsio.bench import report
    from awsio.bench.data import Manifest

    manifest = Manifest("tar", ["s3://b/k"], [1 << 20], None, "test")
    results = [_result("awsio", [300, 150, 330]), _result("boto3", [100, 100, 110])]
    rows = {r["loader"]: r for r in report.rows(results, manifest)}
    # per round 3.0, 1.5, 3.0 -> median 3.0 (a ratio of medians would give 300/100 = 3.0 too, but a
    # ratio of best-ofs 330/110 = 3.0; the spread is what shows round 2's disagreement)
    assert rows["boto3"]["ratio"] == 3.0 and rows["boto3"]["ratio_lo"] == 1.5
    assert rows["awsio"]["rank"] == 1 and rows["boto3"]["rank"] == 2
    assert rows["awsio"].get("ratio") is None  # no ratio of the subject to itself
