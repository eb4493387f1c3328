"""The benchmark harness: interleaved timing, the target ratios, and a real run's outputs.

Speed itself is not asserted here (timings belong to the benchmarks); these tests check what
the harness records and writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import harness  # noqa: E402
import worker  # noqa: E402


def test_timed_interleaves_rounds_and_reports_failures() -> None:
    calls: list[str] = []
    state = {"c": 0}

    def failing_on_third_call() -> None:
        state["c"] += 1
        calls.append("c")
        if state["c"] == 3:
            raise RuntimeError("boom")

    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b"),
           "c": failing_on_third_call,
           "d": lambda: (_ for _ in ()).throw(ValueError("no"))}
    res = worker.timed(fns, repeats=3)
    # first calls, then rounds a b c, a b c (c fails on its third call), a b
    assert calls == ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a", "b"]
    assert res["a"]["repeats"] == 3 and res["a"]["min_ms"] <= res["a"]["median_ms"]
    assert set(res["a"]) == {"compile_ms", "median_ms", "min_ms", "max_ms", "iqr_ms", "repeats"}
    assert res["c"] == {"error": "RuntimeError: boom"}
    assert res["d"] == {"error": "ValueError: no"}


def _rec(backend: str, shape: tuple[int, ...], ms: float, frac: float = 0.5) -> dict[str, Any]:
    return {"backend": backend, "shape": list(shape), "threads": 1, "pass": "forward",
            "status": "ok", "median_ms": ms, "peak_fraction": frac}


def test_ratios_against_the_targets() -> None:
    big, long_ = (64, 200, 128, 128), (16, 1000, 32, 256)
    doc = {"threads": [1, 2], "import_seconds": 0.31, "records": [
        _rec("jax", big, 10.4, 0.70), _rec("jax-bare", big, 10.0),
        _rec("jax", long_, 10.6, 0.60), _rec("jax-bare", long_, 10.0),
        _rec("torch", big, 12.0), _rec("numpy", big, 10.0), _rec("numpy-f64", big, 26.0),
        {**_rec("torch", long_, 1.0), "threads": 2},  # other thread count: ignored
        _rec("torch", (128, 50, 256, 512), 9.0), _rec("numpy", (128, 50, 256, 512), 10.0),
        _rec("numpy-beside-torch", (128, 50, 256, 512), 8.0),  # preferred over numpy
    ]}
    rows = {(r[0], r[1]): r[2:] for r in harness.ratios(doc)}
    assert rows[("jax / jax-bare <= 1.05", str(big))] == ["1.040", "yes"]
    assert rows[("jax / jax-bare <= 1.05", str(long_))] == ["1.060", "no"]
    assert rows[("jax >= 65% of peak", str(big))] == ["70%", "yes"]
    assert rows[("jax >= 65% of peak", str(long_))] == ["60%", "no"]
    assert rows[("torch / numpy > 1 (oracle faster)", str(big))] == ["1.200", "yes"]
    assert rows[("torch / numpy > 1 (oracle faster)", str(long_))] == ["-", "not measured"]
    assert rows[("torch / numpy-beside-torch > 1 (oracle faster)", "(128, 50, 256, 512)")] == [
        "1.125", "yes"]
    assert rows[("numpy-f64 / numpy <= 2.5", str(big))] == ["2.60", "no"]
    assert rows[("import rnn_ref < 0.3 s", "-")] == ["0.310 s", "no"]


def test_a_real_run_writes_every_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    pytest.importorskip("matplotlib")
    # a framework that is not installed is a skipped row with its reason, not a missing row
    monkeypatch.setitem(harness._IMPORTS, "torch", "no_such_module_rnn_ref")
    shape = (2, 6, 3, 5)
    doc = harness.run(quick=True, threads=[1], repeats=2, out=tmp_path,
                      frameworks=["numpy", "torch"], progress=False, shapes=[shape])
    for name in ("bench.json", "bench.md", "summary.md", "time_vs_T.png", "time_vs_M.png",
                 "peak_fraction.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "bench.json").read_text()) == doc
    assert doc["machine"]["versions"]["numpy"] and doc["machine"]["cores"]
    assert doc["matmul_peak_gflops"]["1"] > 0 and 0 < doc["import_seconds"] < 30
    assert doc["thread_settings"]["1"]["OMP_NUM_THREADS"] == "1"
    by = {(r["backend"], r["pass"]): r for r in doc["records"]}
    assert set(by) == {(b, p) for b in ("numpy-loop", "numpy", "numpy-f64", "torch",
                                        "numpy-beside-torch")
                       for p in ("forward", "forward_backward")}
    ok = by[("numpy", "forward")]
    assert ok["status"] == "ok" and ok["repeats"] == 2 and ok["shape"] == list(shape)
    assert ok["gflops"] == pytest.approx(worker.flops(*shape) / ok["median_ms"] * 1e-6)
    assert ok["peak_fraction"] == pytest.approx(ok["gflops"] / doc["matmul_peak_gflops"]["1"])
    assert by[("numpy-f64", "forward_backward")]["status"] == "ok"
    assert by[("numpy", "forward_backward")]["reason"] == "not measured: inference only"
    assert by[("torch", "forward")]["reason"] == "no_such_module_rnn_ref is not installed"
    summary = (tmp_path / "summary.md").read_text()
    assert "| numpy |" in summary and "| target | shape | measured | met |" in summary


def _instructions(hlo: str) -> list[str]:
    """The optimised program's instructions, without names, source locations or order."""
    import re

    hlo = re.sub(r"metadata=\{[^}]*\}|, stack_frame_id=\d+", "", hlo)
    hlo = re.sub(r"%[\w.\-]+", "%v", hlo)
    return sorted(re.sub(r"[, ]+$", "", line) for line in hlo.splitlines() if " = " in line)


def test_jax_backend_compiles_to_the_bare_scan() -> None:
    """The jax backend's overhead over a hand-written scan is nil by construction: XLA compiles
    both to the same instructions (only two independent initialisations swap places), so the
    benchmark's jax / jax-bare ratio measures noise from where buffers land."""
    from conftest import need

    need("jax")
    import jax
    import numpy as np

    import rnn_ref
    from rnn_ref.backends.jax import backend as jax_backend

    params = rnn_ref.init(rnn_ref.RNNConfig(24, 40), seed=0, dtype=np.float32)
    tree = jax_backend.pytree_of(params)
    x = np.random.default_rng(0).standard_normal((6, 9, 24)).astype(np.float32)

    def ours(tr: Any, xx: Any) -> Any:
        return jax_backend.apply(tr, xx, config=params.config)[0]

    a, b = (_instructions(jax.jit(f).lower(tree, x).compile().as_text())
            for f in (ours, worker.bare_scan))
    assert a == b
    np.testing.assert_array_equal(jax.jit(ours)(tree, x), jax.jit(worker.bare_scan)(tree, x))


def test_a_failing_worker_is_an_error_row_not_a_missing_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_env = harness._env
    # the worker refuses to run when the environment does not match --threads
    monkeypatch.setattr(harness, "_env", lambda f, k: {**real_env(f, k), "OMP_NUM_THREADS": "7"})
    doc = harness.run(quick=True, threads=[1], repeats=1, out=tmp_path, frameworks=["numpy"],
                      progress=False, shapes=[(2, 3, 2, 2)])
    assert doc["records"] == [{
        "backend": "numpy", "threads": 1, "pass": "forward", "status": "error",
        "reason": "the worker failed: worker.py: the harness must set OMP_NUM_THREADS to "
                  "--threads"}]
    assert "skipped numpy: the worker failed" in harness.terminal(doc)
    assert "matmul peak, not measured" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("bad", ["0", "100000"])
def test_thread_counts_outside_the_cores_are_refused(
        bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        harness.main(["--threads", "1", bad])
    assert exc.value.code == 2
    assert f"the cores this process may use), got {bad}" in capsys.readouterr().err


def test_a_run_overwrites_only_an_earlier_runs_outputs(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "bench.json").write_text(json.dumps({"machine": {}, "records": []}))
    (earlier / "summary.md").write_text("an earlier summary")
    assert harness.refusal(earlier, earlier / "bench.json") is None
    assert harness.refusal(tmp_path / "new" / "folder", None) is None

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my own notes")
    (mine / "notes.json").write_text('{"mine": true}')
    assert "refusing to overwrite" in harness.refusal(mine, None)  # type: ignore[operator]
    assert "refusing to overwrite" in harness.refusal(  # type: ignore[operator]
        earlier, mine / "notes.json")
    assert "is not a folder" in harness.refusal(mine / "summary.md", None)  # type: ignore[operator]
    assert "does not exist" in harness.refusal(  # type: ignore[operator]
        earlier, tmp_path / "nowhere" / "x.json")


def test_the_cli_refuses_before_running(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bench.md").write_text("not a benchmark")
    with pytest.raises(SystemExit) as exc:
        harness.main(["--quick", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "holds bench.md" in capsys.readouterr().err
    assert (tmp_path / "bench.md").read_text() == "not a benchmark"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.md"]


def test_self_timed_closures_report_their_own_milliseconds() -> None:
    res = worker.timed({"gpu": lambda: 2.5, "cpu": lambda: 2.5}, repeats=3,
                       self_timed=frozenset({"gpu"}))
    assert res["gpu"]["median_ms"] == 2.5 and res["gpu"]["min_ms"] == 2.5
    assert res["cpu"]["median_ms"] < 1  # the wall time of returning a number


def _pass(backend: str, shape: tuple[int, ...], ms: float, pass_: str) -> dict[str, Any]:
    return {**_rec(backend, shape, ms), "pass": pass_}


def test_issue_15_targets_peers_keras_jax_gpu_and_check_time() -> None:
    big, long_ = (64, 200, 128, 128), (16, 1000, 32, 256)
    doc = {"threads": [1], "check_seconds": 31.0, "records": [
        _rec("jax", big, 9.0), _rec("torch", big, 9.5), _rec("keras[jax]", big, 8.0),
        _rec("numpy-loop", big, 1.0),  # not a peer
        _rec("jax", long_, 9.0), _rec("numpy", long_, 9.9),
        _pass("jax", big, 20.0, "forward_backward"),
        _pass("keras[jax]", big, 19.0, "forward_backward")]}
    rows = {(r[0], r[1]): r[2:] for r in harness.ratios(doc)}
    assert rows[("jax / best peer <= 1 (forward)", str(big))] == ["1.125 (keras[jax])", "no"]
    assert rows[("jax / best peer <= 1 (forward)", str(long_))] == ["0.909 (numpy)", "yes"]
    assert rows[("jax / keras[jax] <= 1 (forward + backward)", str(big))] == ["1.053", "no"]
    assert rows[("rnn-ref check --backend jax (quick) < 30 s", "-")] == ["31.0 s", "no"]
    assert not any(r[0].startswith("jax[gpu") for r in harness.ratios(doc))  # no GPU rows
    small = (32, 100, 64, 64)
    gpu = {"threads": [1], "device": "gpu", "records": [
        _rec("jax[gpu,fp32]", small, 0.5), _rec("torch[cuda,fp32]", small, 0.1),
        _rec("jax[gpu]", small, 0.25), _rec("torch[cuda]", small, 0.1)]}
    rows = {(r[0], r[1]): r[2:] for r in harness.ratios(gpu)}
    assert rows[("jax[gpu,fp32] / torch[cuda,fp32] <= 3", str(small))] == ["5.00", "no"]
    assert rows[("jax[gpu] / torch[cuda] <= 3", str(small))] == ["2.50", "yes"]
    assert rows[("jax[gpu] / torch[cuda] <= 3", str(big))] == ["-", "not measured"]
    assert all(r[0].startswith("jax[gpu") for r in harness.ratios(gpu))


def test_gpu_records_use_their_precisions_peak() -> None:
    recs = [{"backend": b, "status": "ok", "flops": 1e9, "pass": "forward", "median_ms": 1.0}
            for b in ("torch[cuda,fp16]", "jax[gpu]", "torch")]
    worker.with_peaks(recs, {"fp32": 1000.0, "tf32": 4000.0, "fp16": 8000.0, "bf16": 8000.0})
    assert [r["peak_gflops"] for r in recs] == [8000.0, 4000.0, 1000.0]
    assert recs[2]["peak_fraction"] == 1.0


def test_bench_on_a_gpu_refuses_in_one_line_without_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    why = harness.gpu_refusal()
    if why is None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as info:
        harness.main(["--device", "gpu", "--quick", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("--device gpu: " + why) and "available: cpu" in err
    assert not (tmp_path / "out").exists()  # refused before anything ran
