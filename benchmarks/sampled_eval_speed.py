"""Sampled evaluation (uni99) of a checkpoint: RecBole's row-by-row ``predict`` against one
``full_sort_predict`` row per distinct history (recbole_usr/evaluation/sampled_from_full_sort.py).

Both passes draw the same negatives (same seed), so their metrics must be identical; the
JSON records time and metrics of each.

    python benchmarks/sampled_eval_speed.py --model_file=saved/SASRec-<date>.pth
    python benchmarks/sampled_eval_speed.py --model_file=... --skip_row_by_row   # large data
"""

import argparse
import os
import sys

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if CHECKOUT not in sys.path:
    sys.path.insert(0, CHECKOUT)

import recbole_usr  # noqa: E402,F401  (compat shim first)
import torch  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.child import runtime  # noqa: E402
from benchmarks.run import provenance  # noqa: E402
from recbole_usr.evaluate import evaluate_valid_and_test  # noqa: E402
from recbole_usr.evaluation.seen_items import own_protocol  # noqa: E402
from recbole_usr.quick_start import load_data_and_model  # noqa: E402
from recbole_usr.utils import write_results  # noqa: E402

METRICS = ("hit@10", "ndcg@10")


def timed_evaluation(config, model, train_data, valid_data, test_data, from_full_sort):
    """``recbole_usr.evaluate``'s valid + test pass with the property set to ``from_full_sort``."""
    init_seed(config["seed"], True)  # RecBole draws the negatives anew on every pass
    config["sampled_eval_from_full_sort"] = from_full_sort
    valid, test_by_protocol, _, seconds = evaluate_valid_and_test(config, model, train_data, valid_data, test_data)
    test = test_by_protocol[own_protocol(config)]
    return {"seconds": seconds, "valid": {m: float(valid[m]) for m in METRICS},
            "test": {m: float(test[m]) for m in METRICS}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--eval_mode", default="uni99")
    parser.add_argument("--skip_row_by_row", action="store_true", help="time only the grouped path")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/sampled_eval_<model>_<dataset>.json)")
    args = parser.parse_args(argv)

    config, model, _, train_data, valid_data, test_data = load_data_and_model(args.model_file, eval_mode=args.eval_mode)
    paths = {"full_sort_grouped": True}
    if not args.skip_row_by_row:
        paths = {"row_by_row": False, **paths}
    record = {
        "command": "python " + " ".join([os.path.relpath(__file__, CHECKOUT)] + (argv or sys.argv[1:])),
        **provenance(), "threads": torch.get_num_threads(),
        "model": config["model"], "dataset": config["dataset"], "model_file": args.model_file,
        "eval_mode": args.eval_mode, "valid_users": len(valid_data.uid_list), "test_users": len(test_data.uid_list),
    }
    for name, from_full_sort in paths.items():
        record[name] = timed_evaluation(config, model, train_data, valid_data, test_data, from_full_sort)
        print(f"{name}: {record[name]}", flush=True)
    record.update(runtime())
    out = args.out or os.path.join(CHECKOUT, "benchmarks", "results",
                                   f"sampled_eval_{config['model']}_{config['dataset']}.json")
    write_results(out, record)
    print(f"written {out}")
    return record


if __name__ == "__main__":
    main()
