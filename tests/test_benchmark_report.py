"""benchmarks/report.py: runs of different budgets stay apart; re-evaluations get their own row."""

import json

import pytest
import torch

from benchmarks.report import epoch_budget, metric_table, reevaluated_records


def record(label, epochs, ndcg, **extra):
    return {"label": label, "command": f"run_recbole_usr.py --model=M --epochs={epochs}", "file": f"{label}-{epochs}.json",
            "test_result": {"ndcg@10": ndcg}, "train_epoch_seconds": [1.0] * epochs, **extra}


def table_rows(table):
    return [line for line in table.splitlines()[2:] if line.startswith("| ")]


def test_budgets_are_not_averaged_together_but_seeds_are():
    records = [record("A", 12, 0.1), record("A", 30, 0.3), record("A", 30, 0.5)]
    assert [epoch_budget(r) for r in records] == [12, 30, 30]
    rows = table_rows(metric_table(records, published=None))
    assert len(rows) == 2
    assert "| A | 1 | 12 | 12 |" in rows[0] and "0.1000" in rows[0]
    assert "| A | 2 | 30 | 30,30 |" in rows[1] and "0.4000 ± 0.1414" in rows[1]


def test_reevaluated_checkpoint_becomes_a_row_with_both_commands():
    trained = record("A", 30, 0.04, reevaluated={"uni99": {"test_result": {"ndcg@10": 0.39},
                                                          "command": "-m recbole_usr.evaluate --eval_mode=uni99"}})
    rows = reevaluated_records([trained, record("B", 30, 0.05)], "uni99")
    assert len(rows) == 1
    assert rows[0]["test_result"] == {"ndcg@10": 0.39}
    assert "recbole_usr.evaluate" in rows[0]["command"] and "--epochs=30" in rows[0]["command"]
    assert trained["test_result"] == {"ndcg@10": 0.04}  # the full-ranking record is untouched


def recipe_record(seed, settings, ndcg_kept, ndcg_removed):
    return {"suite": "recipe", "label": "id_ss", "dataset": "D", "seed": seed, "settings_hash": settings,
            "git_describe": "abc1234", "threads": 1, "machine": "M", "returncode": 0,
            "command": f"run_recbole_usr.py --seed={seed}",
            "test_result_by_protocol": {"history_kept": {"recall@10": 0.1, "ndcg@10": ndcg_kept},
                                        "history_removed": {"recall@10": 0.2, "ndcg@10": ndcg_removed}}}


def test_recipe_table_averages_seeds_of_one_setting_only():
    from benchmarks.report import recipe_table

    records = [recipe_record(1, "s60", 0.03, 0.05), recipe_record(2, "s60", 0.05, 0.07), recipe_record(1, "s6", 0.01, 0.02)]
    rows = [line for line in recipe_table(records, "D").splitlines()[2:] if line.startswith("| id_ss")]
    assert len(rows) == 2
    averaged = next(row for row in rows if "1,2 (0)" in row)
    assert "0.0400 ± 0.0141" in averaged and "0.0600 ± 0.0141" in averaged
    single = next(row for row in rows if row is not averaged)
    assert "| 1 (0) |" in single and "0.0100" in single and "0.0200" in single


def test_property_sweep_averages_successful_seeds_and_lists_failed_ones():
    from benchmarks.property_sweep import summarise

    ok = [dict(recipe_record(s, "h", kept, removed), parameter_counts={"item_embedding": 1234},
               seconds_to_best_valid=10.0 * s) for s, kept, removed in ((1, 0.1, 0.3), (2, 0.2, 0.5))]
    failed = {"seed": 3, "returncode": 1}
    row = summarise(ok + [failed], value=16)
    assert row["seeds"] == [1, 2] and row["failed"] == [3]
    mean, sd = row["history_removed/ndcg@10"]
    assert abs(mean - 0.4) < 1e-12 and abs(sd - 0.1414213562) < 1e-9  # sample sd of 0.3 and 0.5
    assert abs(row["history_kept/ndcg@10"][0] - 0.15) < 1e-12
    assert row["item_table"] == 1234 and row["seconds_to_best_valid"] == 15.0
    assert row["uni99/ndcg@10"] == (None, None)  # no run was re-tested


def test_property_sweep_averages_the_uni99_retest_of_each_successful_run():
    from benchmarks.property_sweep import summarise

    def retested(seed, ndcg, returncode=0):
        return dict(recipe_record(seed, "h", 0.1, 0.2), parameter_counts={"item_embedding": 1},
                    reevaluated={"uni99": {"returncode": returncode, "test_result": {"ndcg@10": ndcg}}})

    row = summarise([retested(1, 0.30), retested(2, 0.40), retested(3, 0.99, returncode=1),
                     recipe_record(4, "h", 0.1, 0.2)], value=8)
    mean, sd = row["uni99/ndcg@10"]
    assert abs(mean - 0.35) < 1e-12 and abs(sd - 0.0707106781) < 1e-9  # the failed re-test is left out


def test_property_sweep_seen_share_comes_from_the_test_or_a_full_retest_and_names_its_seeds(tmp_path):
    from benchmarks.property_sweep import seen_share_cell, summarise

    def base(seed):
        return dict(recipe_record(seed, "h", 0.1, 0.2), parameter_counts={"item_embedding": 1})

    own = dict(base(1), seen_share={"seen_share@5": 0.9, "seen_share@10": 0.10})
    retested = dict(base(2), reevaluated={"full": {"returncode": 0, "seen_share": {"seen_share@10": 0.30}}})
    row = summarise([own, retested, base(3)], value=8)
    mean, sd = row["seen_share@10"]
    assert abs(mean - 0.20) < 1e-12 and abs(sd - 0.1414213562) < 1e-9  # run 3 has none: left out
    assert row["seen_share_seeds"] == [1, 2]
    assert seen_share_cell(row) == "20.0% ± 14.1 pp (seed 1,2)"
    assert seen_share_cell(summarise([base(3)], value=8)) == "–"


def test_property_sweep_tokens_vary_one_property_or_compare_whole_recipes():
    from benchmarks.property_sweep import sweep_tokens

    assert sweep_tokens("unified_ss", "id_dim", ["0", "16"]) == {"0": "unified_ss+id_dim=0", "16": "unified_ss+id_dim=16"}
    # the value unified_ss.yaml already sets is the recipe's own run, not a second file of the same setting
    assert sweep_tokens("unified_ss", "id_dim", ["8", "32"]) == {"8": "unified_ss", "32": "unified_ss+id_dim=32"}
    assert sweep_tokens("unified_ss+id_dim=0", "id_dim", ["0"]) == {"0": "unified_ss+id_dim=0"}
    # so is UnifiedSASRec's own default (every recipe runs it); other values get their own token
    assert sweep_tokens("unified_ss", "rq_unique_last_level", ["False", "True"]) == {
        "False": "unified_ss", "True": "unified_ss+rq_unique_last_level=True"}
    assert sweep_tokens("unified_ss", "recipe", ["id_ss", "unified_ss+id_dim=16"]) == {
        "id_ss": "id_ss", "unified_ss+id_dim=16": "unified_ss+id_dim=16"}


def write_records(directory, name, records):
    import json

    for record in records:
        with open(directory / f"{name}-s{record['seed']}.json", "w") as f:
            json.dump({"parameter_counts": {"item_embedding": 100}, **record}, f)


def test_headline_rows_average_their_files_and_change_against_the_first(tmp_path, monkeypatch):
    import benchmarks.headline as headline

    monkeypatch.setattr(headline, "RESULTS_DIR", str(tmp_path))
    def retested(record, ndcg):
        return dict(record, reevaluated={"uni99": {"returncode": 0, "test_result": {"ndcg@10": ndcg}}})

    # only seed 1 of the baseline was re-tested under uni99: its cell says so
    write_records(tmp_path, "base", [retested(recipe_record(1, "h", 0.02, 0.04), 0.30), recipe_record(2, "h", 0.04, 0.06)])
    write_records(tmp_path, "new", [retested(recipe_record(1, "g", 0.045, 0.045), 0.33)])
    rows = headline.load_rows("D", ["base=base-s*.json", "new=new-s1.json"])
    table = headline.summarise_rows(rows)
    assert table[0]["seeds"] == [1, 2] and table[0]["history_kept/ndcg@10"][0] == 0.03
    # kept N@10: 0.045 against 0.03 is +50%; removed N@10: 0.045 against 0.05 is -10%
    assert headline.change(table[1], table[0], "history_kept/ndcg@10") == "+50.0%"
    assert headline.change(table[1], table[0], "history_removed/ndcg@10") == "-10.0%"
    path = tmp_path / "out.md"
    headline.write_markdown(path, "D", table, {"command": "c", "git_describe": "x", "machine": "M", "threads": 1,
                                               "versions": {}})
    text = path.read_text()
    assert "| new vs base | | +0.0% | +50.0% | +0.0% | -10.0% | +10.0% |" in text  # uni99 .33 against .30
    assert "0.0300 ± 0.0141" in text and "`base-s1.json`" in text
    assert "| 0.0500 ± 0.0141 | 0.3000 (seed 1) |" in text
    assert "| new | 1 (0) | 0.1000 | 0.0450 | 0.2000 | 0.0450 | 0.3300 |" in text  # one run: no spread shown


def test_headline_best_epoch_is_the_epoch_validated_not_the_validation_count(tmp_path, monkeypatch):
    import benchmarks.headline as headline

    monkeypatch.setattr(headline, "RESULTS_DIR", str(tmp_path))
    every_second = dict(recipe_record(1, "h", 0.02, 0.04), best_valid_index=2, valid_epochs=[1, 3, 5, 7])
    older = dict(recipe_record(2, "h", 0.02, 0.04), best_valid_index=4)  # no valid_epochs: validated every epoch
    write_records(tmp_path, "run", [every_second, older])
    (row,) = headline.summarise_rows(headline.load_rows("D", ["run=run-s*.json"]))
    assert row["best_epochs"] == [6, 5]  # third validation ran after epoch 5 (from 0): the 6th epoch


def test_headline_refuses_mixed_machines_and_rows_without_files(tmp_path, monkeypatch):
    import pytest

    import benchmarks.headline as headline

    monkeypatch.setattr(headline, "RESULTS_DIR", str(tmp_path))
    write_records(tmp_path, "cpu", [recipe_record(1, "h", 0.02, 0.04)])
    write_records(tmp_path, "gpu", [dict(recipe_record(1, "h", 0.02, 0.04), machine="GPU")])
    with pytest.raises(ValueError, match="one machine and thread count"):
        headline.load_rows("D", ["cpu=cpu-s1.json", "gpu=gpu-s1.json"])
    with pytest.raises(ValueError, match="no result file matches"):
        headline.load_rows("D", ["cpu=cpu-s1.json", "missing=nothing-*.json"])
    with pytest.raises(ValueError, match="must be a E run"):
        headline.load_rows("E", ["cpu=cpu-s1.json"])


def test_item_repr_rows_average_seeds_per_slice_and_keep_empty_slices_empty():
    from benchmarks.item_repr_table import aggregate
    from recbole_usr.evaluation import format_slice_table

    def run(seed, overall, cold):
        return {"seed": seed, "model": "M", "item_parameters": 10, "matches_recbole": True, "train_seconds": seed,
                "train_epoch_seconds": [1.0] * seed, "recbole_test_result": {},
                "slices": {"overall": {"recall@10": overall, "ndcg@10": overall / 2, "n_targets": 5},
                           "cold": {"recall@10": cold, "ndcg@10": cold, "n_targets": 0}}}

    row = aggregate([run(1, 0.2, float("nan")), run(3, 0.4, float("nan"))])
    assert row["seeds"] == [1, 3] and row["epochs_run"] == [1, 3] and row["train_seconds"] == 2
    overall = row["slices"]["overall"]
    assert abs(overall["recall@10"] - 0.3) < 1e-12 and abs(overall["recall@10_sd"] - 0.1414213562) < 1e-9
    assert overall["n_targets"] == 5
    assert "recall@10_sd" not in row["slices"]["cold"]
    table = format_slice_table([("M", 10, row["slices"])], 10)
    assert "| M | 10 | 0.3000 ± 0.1414 | 0.1500 ± 0.0707 |" in table
    assert table.rstrip().endswith("| - | - |")  # the empty cold slice
    assert "recall@10_sd" not in aggregate([run(1, 0.2, None), run(2, 0.2, None)])["slices"]["cold"]  # evaluate_slices' empty
    single = aggregate([run(1, 0.2, 0.1)])
    assert "recall@10_sd" not in single["slices"]["overall"]
    assert "| M | 10 | 0.2000 | 0.1000 |" in format_slice_table([("M", 10, single["slices"])], 10)


def test_property_sweep_table_shows_spread_only_where_there_are_several_seeds(tmp_path):
    from benchmarks.property_sweep import summarise, write_markdown

    runs = {seed: dict(recipe_record(seed, "h", 0.1 * seed, 0.2), parameter_counts={"item_embedding": 1})
            for seed in (1, 2)}
    table = {"D": [summarise([runs[1]], "one"), summarise([runs[1], runs[2]], "two")]}
    info = {"property": "p", "recipe": "r", "command": "c", "git_describe": "g", "threads": 1, "machine": "M",
            "versions": "v"}
    write_markdown(tmp_path / "t.md", info, table)
    one, two = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("| D |")]
    assert "| 0.1000 |" in one and "±" not in one
    assert "0.1500 ± 0.0707" in two


def test_property_sweep_panel_starts_at_zero_and_draws_budget_stopped_runs_hollow():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from benchmarks.property_sweep import draw_panel, summarise

    converged = dict(recipe_record(1, "h", 0.30, 0.32), parameter_counts={"item_embedding": 1})
    stopped = dict(recipe_record(1, "h", 0.31, 0.33), parameter_counts={"item_embedding": 1},
                   stopped_by_time_budget=True)
    rows = [summarise([converged], "8"), summarise([stopped], "16")]
    fig, ax = plt.subplots()
    draw_panel(ax, rows, "ndcg@10", {"history_kept": "kept"})
    assert ax.get_ylim()[0] == 0  # not zoomed onto 0.30..0.31
    filled = {tuple(line.get_xdata()): line.get_markerfacecolor() for line in ax.get_lines()
              if line.get_marker() == "o"}
    assert filled[(0,)] != "white" and filled[(1,)] == "white"
    plt.close(fig)


def test_property_sweep_names_the_code_of_every_run_it_reuses(tmp_path):
    from benchmarks.property_sweep import summarise, write_markdown

    old = dict(recipe_record(1, "h", 0.1, 0.2), parameter_counts={"item_embedding": 1})
    new = dict(old, seed=2, git_describe="def5678")
    table = {"D": [summarise([old, new], "8"), summarise([new], "16")]}
    info = {"property": "id_dim", "recipe": "r", "command": "c", "git_describe": "fff0000", "threads": 1,
            "machine": "M", "versions": "v"}
    write_markdown(tmp_path / "t.md", info, table)
    text = (tmp_path / "t.md").read_text()
    eight, sixteen = [line for line in text.splitlines() if line.startswith("| D |")]
    assert eight.endswith("| abc1234, def5678 |") and sixteen.endswith("| def5678 |")
    assert "Built at fff0000" in text and "Code fff0000" not in text


def test_headline_item_table_change_says_smaller_or_larger():
    from benchmarks.headline import size_change

    assert size_change(93, 1000) == "90.7% smaller"
    assert size_change(2011, 1000) == "2.0x larger"
    assert size_change(1000, 1000) == "same"
    assert size_change(None, 1000) == ""


@pytest.mark.parametrize("retested", [False, True])
def test_headline_legend_sits_beside_the_bars_not_on_them(tmp_path, monkeypatch, retested):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import benchmarks.headline as headline

    figures = []
    monkeypatch.setattr(headline, "finish_figure", lambda fig, path, footer, title: figures.append(fig))
    table = [{"value": f"row {i}", "seeds": [1, 2, 3], "code": ["abc"],
              **{f"{p}/{m}": (0.05 + 0.01 * i, 0.001) for p in headline.PROTOCOLS for m in headline.METRICS},
              # the sampled re-test (row 3 never had one): its own panel, one point per re-tested row
              "uni99/ndcg@10": (0.35 + 0.01 * i, 0.002) if retested and i < 3 else (None, None),
              "retest_seeds": [1, 2, 3] if retested and i < 3 else []}
             for i in range(4)]
    info = {"command": "c", "git_describe": "g", "threads": 1, "versions": "v"}
    headline.write_plot(tmp_path / "h.png", "Amazon_Sports_and_Outdoors", table, info)
    fig = figures[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    assert len(fig.axes) == (2 if retested else 1)
    legend_ax = fig.axes[-1]
    legend = legend_ax.get_legend().get_window_extent(renderer)
    bars = [patch.get_window_extent(renderer) for patch in ax.patches]
    assert len(bars) == 16
    assert not any(legend.overlaps(bar) for bar in bars)
    assert [t.get_text() for t in legend_ax.get_legend().get_texts()][1] == "row 0 (3 seeds)"
    if retested:
        points = [line.get_ydata()[0] for line in fig.axes[1].lines if line.get_marker() == "o"]
        assert points == pytest.approx([0.35, 0.36, 0.37])
        assert not legend.overlaps(fig.axes[1].get_window_extent(renderer))
        assert [t.get_text() for t in fig.axes[1].texts] == ["not re-tested"]  # row 3's place is not left blank


def test_reuse_takes_a_run_whose_time_budget_decided_nothing(tmp_path, monkeypatch):
    import json

    import benchmarks.recipes as recipes

    monkeypatch.setattr(recipes, "RESULTS_DIR", str(tmp_path))

    def write(name, **fields):
        record = {"label": "unified_ss+id_dim=4", "dataset": "D", "seed": 1, "threads": 1, "returncode": 0,
                  "git_commit": None, "git_dirty": False, "stopped_by_time_budget": False, "train_seconds": 900.0,
                  "overrides": {"id_dim": "4", "train_time_budget": "5000"}}
        record.update(fields)
        (tmp_path / f"recipe-d-unified-ss-id-dim-4-s1-{name}.json").write_text(json.dumps(record))

    write("a-stopped", stopped_by_time_budget=True)
    write("b-threads", threads=2)
    write("c-other", overrides={"id_dim": "4", "hidden_dropout_prob": "0.5"})
    write("d-failed", returncode=1)
    write("e-dirty", git_dirty=True)
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {}) is None
    write("f-good")
    good = str(tmp_path / "recipe-d-unified-ss-id-dim-4-s1-f-good.json")
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {}) == good
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {"train_time_budget": "1000"}) == good
    # a budget shorter than the run's training would have stopped it: not the same run
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {"train_time_budget": "600"}) is None
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 2, 1, {}) is None
    # the recipe's own value spelt out is the same run, under another token
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4+id_dim=4", 1, 1, {}) == good
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {"n_layers": "1"}) == good  # unified_ss sets 1
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {"n_layers": "2"}) is None


def test_reuse_takes_a_budget_stopped_run_only_under_its_own_budget_and_machine(tmp_path, monkeypatch):
    import json

    import benchmarks.recipes as recipes

    monkeypatch.setattr(recipes, "RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(recipes, "machine_name", lambda: "this CPU")

    def write(name, **fields):
        record = {"label": "unified_ss+id_dim=4", "dataset": "D", "seed": 1, "threads": 1, "returncode": 0,
                  "git_commit": None, "git_dirty": False, "stopped_by_time_budget": True, "train_seconds": 5010.0,
                  "machine": "this CPU", "overrides": {"id_dim": "4", "train_time_budget": "5000"}}
        record.update(fields)
        (tmp_path / f"recipe-d-unified-ss-id-dim-4-s1-{name}.json").write_text(json.dumps(record))

    write("a-elsewhere", machine="another GPU")
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {"train_time_budget": "5000"}) is None
    write("b-here")
    here = str(tmp_path / "recipe-d-unified-ss-id-dim-4-s1-b-here.json")
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {"train_time_budget": "5000.0"}) == here
    # a longer budget would have trained on, a shorter one stopped sooner, none never: other runs
    for budget in ("6000", "4000"):
        assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {"train_time_budget": budget}) is None
    assert recipes.equivalent_result("D", "unified_ss+id_dim=4", 1, 1, {}) is None


def test_an_edited_recipe_file_gives_its_runs_another_result_file(tmp_path, monkeypatch):
    import benchmarks.recipes as recipes

    (tmp_path / "properties" / "model").mkdir(parents=True)
    (tmp_path / "properties" / "recipe").mkdir()
    (tmp_path / "properties" / "model" / "UnifiedSASRec.yaml").write_text("id_dim: 8\n")
    recipe = tmp_path / "properties" / "recipe" / "id_ss.yaml"
    recipe.write_text("item_repr: id\n")
    monkeypatch.setattr(recipes, "ROOT", str(tmp_path))
    before = recipes.result_path("D", "id_ss", 1, 1, {})
    recipe.write_text("item_repr: id\nitem_emb_dropout_prob: 0.2\n")
    edited = recipes.result_path("D", "id_ss", 1, 1, {})
    assert edited != before  # --reuse cannot take a run of the old file by its name
    assert recipes.result_path("D", "id_ss+item_emb_dropout_prob=0.2", 1, 1, {}) != edited  # token is part of it
    recipe.write_text("item_repr: id\n")
    assert recipes.result_path("D", "id_ss", 1, 1, {}) == before


def test_a_property_newer_than_a_run_matches_only_at_its_default():
    from benchmarks.recipes import same_settings

    defaults = {"new_switch": False}
    assert same_settings({"a": 1, "new_switch": False}, {"a": 1}, defaults)
    assert not same_settings({"a": 1, "new_switch": True}, {"a": 1}, defaults)
    assert not same_settings({"a": 2, "new_switch": False}, {"a": 1}, defaults)
    assert same_settings({"a": 1}, {"a": 1, "removed_since": 3}, defaults)


def test_versions_name_every_version_the_runs_used():
    from benchmarks.figures import versions_text

    older = {"torch": "2.13.0", "sentence-transformers": "6.2.0", "python": "3.11.7"}
    newer = {"torch": "2.13.0", "sentence-transformers": "6.3.0", "python": "3.11.7", "recbole": None}
    assert versions_text(older) == "torch 2.13.0, sentence-transformers 6.2.0, python 3.11.7"
    assert versions_text(older, newer, older, leave_out=("python",)) == "torch 2.13.0, sentence-transformers 6.2.0 / 6.3.0"


def test_headline_footer_names_the_versions_of_every_row_not_the_first_run(tmp_path, monkeypatch):
    import json

    import benchmarks.headline as headline

    monkeypatch.setattr(headline, "RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(headline, "write_plot", lambda *args: None)
    write_records(tmp_path, "base", [{**recipe_record(1, "h", 0.02, 0.04), "versions": {"st": "6.2.0"}}])
    write_records(tmp_path, "new", [{**recipe_record(1, "g", 0.03, 0.05), "versions": {"st": "6.3.0"}}])
    out = tmp_path / "h"
    headline.main(["--dataset", "D", "--row", "base=base-s1.json", "--row", "new=new-s1.json", "--out", str(out)])
    assert json.loads((tmp_path / "h.json").read_text())["versions"] == "st 6.2.0 / 6.3.0"
    assert "st 6.2.0 / 6.3.0" in (tmp_path / "h.md").read_text()


def test_representation_table_marks_a_run_its_time_budget_stopped(tiny_dataset, tmp_path):
    from benchmarks.item_repr_table import main
    from conftest import SMALL_SASREC

    settings = [f"{key}={value}" for key, value in SMALL_SASREC.items() if key != "epochs"]
    out = tmp_path / "table"
    report = main(["--dataset", tiny_dataset.name, "--epochs", "3", "--reprs", "id", "--out", str(out),
                   "--config_files", str(tiny_dataset.yaml_path),
                   "--set", f"data_path={tiny_dataset.data_path}", "train_time_budget=0.000001", *settings])
    assert report["results"]["id"]["stopped_by_time_budget"] == [True]
    assert report["results"]["id"]["epochs_run"] == [1]  # no epoch starts once the budget is spent
    assert "(1 ‡ epochs)" in (tmp_path / "table.md").read_text()


def test_representation_table_resumes_with_the_runs_it_has_and_refuses_other_settings(tiny_dataset, tmp_path,
                                                                                        monkeypatch):
    import benchmarks.item_repr_table as item_repr_table
    from benchmarks.item_repr_table import main
    from conftest import SMALL_SASREC

    out = tmp_path / "table"
    common = ["--dataset", tiny_dataset.name, "--epochs", "1", "--reprs", "id", "--out", str(out),
              "--config_files", str(tiny_dataset.yaml_path), "--set", f"data_path={tiny_dataset.data_path}",
              *[f"{key}={value}" for key, value in SMALL_SASREC.items() if key != "epochs"]]
    first = main(common + ["--seeds", "2020"])["runs"]["id"][0]
    written = json.loads((tmp_path / "table.json").read_text())
    written["versions"]["torch"] = "0.0-earlier-session"  # as if the first runs were made under other packages
    (tmp_path / "table.json").write_text(json.dumps(written))
    writes = []
    monkeypatch.setattr(item_repr_table, "write_report",
                        lambda *args, write=item_repr_table.write_report: writes.append(write(*args)))
    report = main(common + ["--seeds", "2020", "2021", "--resume"])
    assert len(writes) == 1  # once, after the one run it trained (not again at the end)
    assert [run["seed"] for run in report["runs"]["id"]] == [2020, 2021]
    assert report["runs"]["id"][0]["train_seconds"] == first["train_seconds"]  # kept, not retrained
    assert report["results"]["id"]["seeds"] == [2020, 2021]
    table = (tmp_path / "table.md").read_text()
    assert "runs kept from `python benchmarks/item_repr_table.py" in table
    assert f"torch {torch.__version__} / 0.0-earlier-session" in table  # both commands' packages named
    with pytest.raises(SystemExit, match="epochs"):
        main([arg if arg != "1" else "2" for arg in common] + ["--seeds", "2022", "--resume"])


def test_representation_table_merges_halves_run_side_by_side_and_refuses_a_run_given_twice(tiny_dataset, tmp_path):
    from benchmarks.item_repr_table import main
    from conftest import SMALL_SASREC

    common = ["--dataset", tiny_dataset.name, "--epochs", "1", "--reprs", "id",
              "--config_files", str(tiny_dataset.yaml_path), "--set", f"data_path={tiny_dataset.data_path}",
              *[f"{key}={value}" for key, value in SMALL_SASREC.items() if key != "epochs"]]
    halves = [main(common + ["--seeds", str(seed), "--out", str(tmp_path / f"half{seed}")])["runs"]["id"][0]
              for seed in (2020, 2021)]
    merged = main(common + ["--seeds", "2020", "2021", "--out", str(tmp_path / "whole"),
                            "--merge", str(tmp_path / "half2020.json"), str(tmp_path / "half2021.json")])
    assert [run["train_seconds"] for run in merged["runs"]["id"]] == [run["train_seconds"] for run in halves]
    assert merged["results"]["id"]["seeds"] == [2020, 2021]
    assert len(merged["earlier_commands"]) == 2 and "--out" in merged["earlier_commands"][1]["command"]
    assert json.loads((tmp_path / "whole.json").read_text())["results"]["id"]["seeds"] == [2020, 2021]
    with pytest.raises(SystemExit, match=r"id seed\(s\) \[2020\]"):
        main(common + ["--seeds", "2020", "--out", str(tmp_path / "twice"),
                       "--merge", str(tmp_path / "half2020.json"), str(tmp_path / "whole.json")])
    with pytest.raises(SystemExit, match="no such table"):
        main(common + ["--seeds", "2020", "--out", str(tmp_path / "none"), "--merge", str(tmp_path / "absent.json")])


def test_codebook_health_reads_each_run_at_its_best_epoch_before_any_reseeding(tmp_path, monkeypatch):
    import benchmarks.codebook_health as codebook_health
    import benchmarks.headline as headline

    monkeypatch.setattr(headline, "RESULTS_DIR", str(tmp_path))

    def run(seed, best, natural=None, weights=None, dataset="D"):
        # epoch e's activation is e / 10 at every level; re-seeding lifts it to 1.0 after each epoch
        return dict(recipe_record(seed, "h", 0.02, 0.04), dataset=dataset, valid_epochs=[0, 2, 4],
                    best_valid_index=best, codebook_activation=[[1.0, 1.0]] * 5 if natural else
                    [[e / 10, e / 10] for e in range(5)], codebook_natural_activation=natural or [],
                    codebook_cosine_weight=weights or [])

    natural = [[e / 10, 0.5] for e in range(5)]
    weights = [[0.5 + e / 10, 0.5 - e / 10] for e in range(5)]
    write_records(tmp_path, "fixed", [run(1, best=1), run(2, best=2)])      # best epochs 2 and 4
    write_records(tmp_path, "restarts", [run(1, best=1, natural=natural, weights=weights)])
    rows = codebook_health.load_rows(["fixed=fixed-s*.json", "restarts=restarts-s1.json"])
    fixed, restarts = (codebook_health.summarise_row(name, records) for name, records in rows)
    assert fixed["best_epochs"] == [3, 5]
    assert [m for m, _ in fixed["activation"]] == pytest.approx([0.3, 0.3])   # mean of 0.2 and 0.4
    assert fixed["activation"][0][1] == pytest.approx(0.1414, abs=1e-4) and fixed["cosine_weight"] is None
    assert restarts["activation"] == [(0.2, 0.0), (0.5, 0.0)]                   # not the 1.0 after re-seeding
    assert [m for m, _ in restarts["cosine_weight"]] == pytest.approx([0.7, 0.3])
    assert codebook_health.levels_cell(restarts["cosine_weight"], 1) == "0.70 / 0.30"
    assert codebook_health.levels_cell(fixed["activation"], 2) == "0.30 ± 0.14 / 0.30 ± 0.14"

    write_records(tmp_path, "short", [dict(run(1, best=2), codebook_activation=[[0.1, 0.1]] * 3)])
    with pytest.raises(ValueError, match="best epoch 4"):
        codebook_health.summarise_row(*codebook_health.load_rows(["short=short-s1.json"])[0])
    write_records(tmp_path, "mixed", [run(1, best=1), run(2, best=1, dataset="E")])
    with pytest.raises(ValueError, match="one dataset a row"):
        codebook_health.load_rows(["mixed=mixed-s*.json"])
    write_records(tmp_path, "gpu", [dict(run(1, best=1), machine="GPU")])
    with pytest.raises(ValueError, match="one machine and thread count"):
        codebook_health.load_rows(["fixed=fixed-s1.json", "gpu=gpu-s1.json"])
    write_records(tmp_path, "other", [dict(run(1, best=1, dataset="E"), machine="GPU")])
    assert len(codebook_health.load_rows(["fixed=fixed-s1.json", "other=other-s1.json"])) == 2  # datasets apart
    out = tmp_path / "health"
    codebook_health.main(["--row", "fixed=fixed-s*.json", "--row", "restarts=restarts-s1.json", "--out", str(out)])
    text = (tmp_path / "health.md").read_text()
    assert "| fixed | D | `id_ss` | 1,2 (0) | 3, 5 | 0.30 ± 0.14 / 0.30 ± 0.14 | fixed |" in text
    assert "| restarts | D | `id_ss` | 1 (0) | 3 | 0.20 / 0.50 | 0.70 / 0.30 |" in text
    assert json.loads((tmp_path / "health.json").read_text())["command"].endswith(f'"restarts=restarts-s1.json" --out {out}')
    assert (tmp_path / "health.png").stat().st_size > 0
