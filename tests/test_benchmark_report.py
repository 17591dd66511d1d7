"""benchmarks/report.py: runs of different budgets stay apart; re-evaluations get their own row."""

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
