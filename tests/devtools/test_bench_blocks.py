"""BENCHMARKS.md is written by several benchmarks, each in its own block: rewriting one keeps the
others and the notes written by hand (``make bench`` used to rewrite the whole file)."""

from __future__ import annotations

from devtools import bench
from devtools.bench_history import BEGIN as HISTORY_BEGIN
from devtools.bench_history import END as HISTORY_END

OTHERS = (
    f"{HISTORY_BEGIN}\nhistory figures\n{HISTORY_END}\n\nA note written by hand.\n\n"
    "<!-- bench-backfill:start -->\nbackfill figures\n<!-- bench-backfill:end -->\n"
)


def _write(tmp_path, monkeypatch, text, bench_block, growth_block):
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    (tmp_path / "BENCHMARKS.md").write_text(text, encoding="utf-8")
    bench.write_benchmarks(bench_block, growth_block)
    return (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")


def _growth(label: str) -> str:
    return f"{bench.GROWTH_BEGIN}\n## Growth curve\n{label}\n{bench.GROWTH_END}"


def test_make_bench_replaces_its_block_only(tmp_path, monkeypatch):
    old = f"{bench.BENCH_BEGIN}\n# Benchmarks\nold stages\n{_growth('old growth')}\n{bench.BENCH_END}\n\n{OTHERS}"
    out = _write(tmp_path, monkeypatch, old, f"# Benchmarks\nnew stages\n{_growth('new growth')}\n", None)
    assert "new stages" in out and "new growth" in out
    assert "old stages" not in out and "old growth" not in out
    assert out.endswith(OTHERS) and out.count(bench.BENCH_BEGIN) == 1


def test_the_growth_curve_alone_replaces_its_block_inside_make_bench_s(tmp_path, monkeypatch):
    old = f"{bench.BENCH_BEGIN}\n# Benchmarks\nstages\n{_growth('old growth')}\nprofile\n{bench.BENCH_END}\n\n{OTHERS}"
    out = _write(tmp_path, monkeypatch, old, None, _growth("new growth"))
    assert out == old.replace("old growth", "new growth")


def test_a_file_written_before_the_markers_keeps_the_other_blocks(tmp_path, monkeypatch):
    old = f"# Benchmarks\nstages without markers\n\n{OTHERS}"
    out = _write(tmp_path, monkeypatch, old, "# Benchmarks\nnew stages\n", None)
    assert out.startswith(f"{bench.BENCH_BEGIN}\n# Benchmarks\nnew stages\n{bench.BENCH_END}")
    assert "stages without markers" not in out and out.endswith(OTHERS)


def test_the_render_of_the_growth_curve_says_each_target():
    growth = [
        {"volume": v, "validations": 1.5e6 * v, "wall": 40 + 30 * v, "peak_gib": 2.0 * v**0.6}
        for v in (0.5, 1.0, 2.0, 4.0)
    ]
    text = bench.render_growth(growth)
    assert text.startswith(bench.GROWTH_BEGIN) and text.endswith(bench.GROWTH_END)
    assert "(1×): 70.0 s, target ≤ 60 s: **no**" in text
    assert "volume^0.60 fitted, up to ^0.60 between two volumes; target ≤ 0.7 at every step: yes" in text
