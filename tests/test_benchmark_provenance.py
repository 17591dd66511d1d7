"""benchmarks/run.py records where every number comes from; report.py keeps runs apart unless
their settings, code and thread count agree, and lists failed and dirty-tree runs."""

import json
import subprocess
import sys

import pytest

from benchmarks import report, run
from benchmarks.report import failed_runs, metric_table, provenance_notes


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_code_state_is_dirty_for_code_changes_but_not_for_benchmark_outputs(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "a.json").write_text("{}")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "init")
    monkeypatch.setattr(run, "ROOT", str(tmp_path))

    clean = run.code_state()
    assert clean["git_dirty"] is False and "git_diff_sha256" not in clean
    assert clean["git_describe"] == clean["git_commit"]

    (tmp_path / "benchmarks" / "results" / "a.json").write_text('{"rewritten": 1}')  # a run's own output
    (tmp_path / "benchmarks" / "results" / "b.json").write_text("{}")
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("report")
    assert run.code_state()["git_dirty"] is False

    (tmp_path / "code.py").write_text("x = 2\n")
    first = run.code_state()
    assert first["git_dirty"] is True and first["git_describe"] == clean["git_commit"] + "-dirty"
    (tmp_path / "code.py").write_text("x = 3\n")
    second = run.code_state()
    assert len(first["git_diff_sha256"]) == 16 and first["git_diff_sha256"] != second["git_diff_sha256"]
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "new_module.py").write_text("y = 1\n")  # untracked code counts too
    assert run.code_state()["git_dirty"] is True


SCRIPT = """
import json, sys
if sys.argv[2] == "fail":
    sys.exit("boom")
with open(sys.argv[1], "w") as f:
    json.dump({"test_result": {"ndcg@10": 0.5}}, f)
"""


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_every_record_carries_provenance_measured_in_the_run(tmp_path, outcome):
    script = tmp_path / "bench.py"
    script.write_text(SCRIPT)
    raw = str(tmp_path / "raw.json")
    record = run.run_json_command([sys.executable, str(script), raw, outcome], raw, threads=1)
    for key in ("git_commit", "git_describe", "git_dirty", "versions", "machine", "wall_seconds", "returncode"):
        assert key in record, key
    assert set(record["versions"]) >= {"torch", "numpy", "recbole", "sentence-transformers"}
    assert record["git_describe"].endswith("-dirty") == record["git_dirty"]
    if record["git_dirty"]:
        assert len(record["git_diff_sha256"]) == 16
    if outcome == "ok":
        assert record["returncode"] == 0 and record["test_result"] == {"ndcg@10": 0.5}
        assert record["torch_threads"] == 1  # measured inside the run, not guessed
        assert record["device"] == "cpu" or record["device"].startswith("cuda")
    else:
        assert record["returncode"] == 1 and "boom" in record["error"]


def test_a_run_past_its_time_limit_is_killed_and_recorded(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(60)\n")
    raw = str(tmp_path / "raw.json")
    record = run.run_json_command([sys.executable, str(script), raw], raw, threads=1, timeout=3)
    assert record["timed_out"] is True and record["returncode"] is None
    assert record["wall_seconds"] < 30 and "time limit (3 s)" in record["error"]


def test_result_file_names_carry_every_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(run, "run_json_command", lambda *args, **kwargs: {"returncode": 0})

    def path(extra=None, threads=1, overrides=None, seed=2020):
        return run.run_one("main", "ml-100k", "A", "SASRec", overrides or {}, "full", seed, 1, extra or {}, threads)

    base = path()
    assert path() == base  # the same settings share a file
    others = [path({"MAX_ITEM_LIST_LENGTH": 20}), path({"MAX_ITEM_LIST_LENGTH": 30}), path(threads=2),
              path(overrides={"hidden_size": 32}), path(seed=2021)]
    assert len({base, *others}) == 6
    records = [json.loads(open(p).read()) for p in (base, others[-1])]
    assert records[0]["settings_hash"] == records[1]["settings_hash"]  # seeds are not settings
    assert records[0]["settings_hash"] in base


def record(file, ndcg, seed=2020, describe="abc1234", dirty=False, threads=1, settings="s1", **extra):
    return {"label": "A", "file": file, "seed": seed, "command": "run_recbole_usr.py --epochs=10",
            "test_result": {"ndcg@10": ndcg}, "train_epoch_seconds": [1.0] * 10, "git_commit": describe[:7],
            "git_describe": describe + ("-dirty" if dirty else ""), "git_dirty": dirty, "torch_threads": threads,
            "settings_hash": settings, **({"git_diff_sha256": "0123456789abcdef"} if dirty else {}), **extra}


def rows(table):
    return [line for line in table.splitlines()[2:] if line.startswith("| ")]


def test_seeds_are_averaged_only_within_the_same_code_threads_and_settings():
    same = [record("a.json", 0.1), record("b.json", 0.3, seed=2021)]
    assert len(rows(metric_table(same, None))) == 1 and "0.2000 ± 0.1414" in rows(metric_table(same, None))[0]
    for other in (record("c.json", 0.3, seed=2021, describe="def5678"), record("c.json", 0.3, seed=2021, threads=2),
                  record("c.json", 0.3, seed=2021, settings="s2"), record("c.json", 0.3, seed=2021, dirty=True)):
        table = rows(metric_table([same[0], other], None))
        assert len(table) == 2, other
        assert not any("±" in row for row in table)


def test_failed_and_dirty_runs_are_listed():
    dirty = record("dirty.json", 0.1, dirty=True)
    failed = {"label": "B", "file": "failed.json", "dataset": "ml-100k", "returncode": 1, "git_describe": "abc1234",
              "git_dirty": False, "error": "Traceback\nValueError: bad property"}
    reeval_failed = record("r.json", 0.2, reevaluated={"uni99": {"returncode": 2, "error": "x\nOSError: gone",
                                                                 "git_describe": "abc1234"}})
    table = rows(metric_table([dirty], None))
    assert "abc1234-dirty 0123456789abcdef" in table[0] and "dirty tree" in table[0]
    listed = failed_runs([dirty, failed, reeval_failed])
    assert "ValueError: bad property" in listed and "failed.json" in listed
    assert "A re-evaluated uni99" in listed and "OSError: gone" in listed
    assert "dirty.json" not in listed
    assert "dirty.json" in provenance_notes([dirty, failed])
    assert "failed.json" not in provenance_notes([dirty, failed])


def test_the_report_shows_failed_runs(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    (results / "main-x.json").write_text(json.dumps({"suite": "main", "dataset": "D", "label": "B", "mode": "full",
                                                     "returncode": 1, "error": "RuntimeError: out of memory",
                                                     "git_describe": "abc1234", "git_dirty": False}))
    monkeypatch.setattr(report, "RESULTS_DIR", str(results))
    monkeypatch.setattr(report, "REPORT", str(tmp_path / "RESULTS.md"))
    text = open(report.write_report()).read()
    assert "## Failed runs" in text and "RuntimeError: out of memory" in text


def test_figure_footer_fits_the_figure_and_stays_below_the_axes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from benchmarks.figures import finish_figure

    footer = "python -m benchmarks.something --with many arguments | code abc1234 | seeds 2020 2021 2022 | " * 6
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_xlabel("x label")
    finish_figure(fig, tmp_path / "f.png", footer, title="a title")
    renderer = FigureCanvasAgg(fig).get_renderer()  # the figure is closed: draw it again off screen
    text = fig.texts[-1].get_window_extent(renderer)
    axes_area = ax.get_tightbbox(renderer)
    assert (tmp_path / "f.png").stat().st_size > 0
    assert text.x0 >= 0 and text.x1 <= fig.bbox.x1  # wrapped to the figure's width, not clipped
    assert text.y1 <= axes_area.y0  # under the axes and their labels, not over them
    assert fig.texts[-1].get_text().count("\n") >= 3


def test_a_long_figure_title_is_wrapped_inside_the_figure_above_the_axes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from benchmarks.figures import finish_figure

    title = "Amazon_Sports_and_Outdoors: " + " vs ".join(["unified_ss, id_dim 64, item dropout 0.2"] * 3)
    fig, ax = plt.subplots(figsize=(5, 3))
    finish_figure(fig, tmp_path / "f.png", "footer", title=title)
    renderer = FigureCanvasAgg(fig).get_renderer()
    (heading,) = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().startswith("Amazon_Sports")]
    extent = heading.get_window_extent(renderer)
    assert extent.x0 >= 0 and extent.x1 <= fig.bbox.x1  # not clipped at either edge
    assert extent.y0 >= ax.get_tightbbox(renderer).y1  # above the axes, not over them
    assert heading.get_text().count("\n") >= 2
