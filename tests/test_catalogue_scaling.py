"""The catalogue-scaling benchmark returns real numbers for every step (tiny catalogue)."""

import json

from benchmarks.catalogue_scaling import STEPS, address_space_limit, markdown_table, measure, write_dataset


def test_every_step_measures_time_and_memory(tmp_path):
    name = write_dataset(str(tmp_path), 500, 100, seed=2020)
    for step in STEPS:
        record = measure(step, str(tmp_path), name, seed=2020, memory_limit_mib=9000,
                         settings={"rq_codebook_size": 16, "rq_pretrain_epochs": 1})
        assert record["n_items"] == 500 and record["n_users"] == 100, step
        assert record["seconds"] > 0 and record["peak_rss_mib"] > 0 and record["peak_growth_mib"] >= 0, step
        json.dumps(record)  # what the child writes


def test_ce_over_the_memory_limit_is_recorded_not_run(tmp_path):
    name = write_dataset(str(tmp_path), 500, 100, seed=2020)
    record = measure("train_epoch_ce", str(tmp_path), name, seed=2020, memory_limit_mib=1)
    assert "not_run" in record and "seconds" not in record and record["ce_logits_mib_estimate"] > 1
    table = markdown_table([{"step": "train_epoch_ce", "size": 500, **record}], [500])
    assert "not run" in table and "not measured" in table  # the other steps were not measured



def test_the_memory_guard_stops_an_allocation_past_it():
    import pytest
    import torch

    with pytest.raises(RuntimeError, match="alloc"):
        with address_space_limit(64):
            torch.empty(2 ** 30, dtype=torch.uint8).fill_(1)  # 1 GiB
    torch.empty(2 ** 30, dtype=torch.uint8)  # the limit is lifted after
