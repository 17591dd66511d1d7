"""``python -m recbole_usr.evaluate --model_file=saved/X.pth [--eval_mode=uni99]``

Test a trained checkpoint again, optionally under another evaluation protocol: RecBole fixes
the protocol (full ranking or N sampled negatives) at training time, and papers report
either, so a model trained once with full ranking can be read in the paper's ``uni99`` terms
without retraining. The checkpoint's own best-valid selection is kept; valid and test are
both re-evaluated. Any model written by ``run_recbole_usr`` (plugin or RecBole) works.
"""

import argparse
import os
import sys
import time
from logging import getLogger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", required=True, help="checkpoint written by run_recbole_usr (saved/*.pth)")
    parser.add_argument("--eval_mode", default=None, help="full, uniN or popN (default: the checkpoint's own)")
    parser.add_argument("--results_file", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def evaluate_valid_and_test(config, model, train_data, valid_data, test_data):
    """``(valid_result, test_by_protocol, seen_share, seconds)`` with the model's own trainer,
    as ``run_recbole_usr`` evaluates: valid under the checkpoint's protocol
    (``filter_seen_items``), a full-ranking test under both (seen items kept and removed,
    and the kept top k's share of seen items), sampled protocols scored as in training
    (property ``sampled_eval_from_full_sort``)."""
    from recbole_usr.evaluation.seen_items import seen_items_removed
    from recbole_usr.quick_start import fast_sampled_evaluation, seen_item_mask, test_both_protocols
    from recbole_usr.utils import get_trainer

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    seen_mask = seen_item_mask(config, train_data, trainer.device)
    with fast_sampled_evaluation(config, model):
        start = time.time()
        with seen_items_removed(trainer, seen_mask if config["filter_seen_items"] else None):
            valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=config["show_progress"])
        test_by_protocol, seen_share = test_both_protocols(trainer, seen_mask, test_data, False, config)
        return valid_result, test_by_protocol, seen_share, time.time() - start


def evaluate_checkpoint(model_file, eval_mode=None):
    """``{"valid_result", "test_result", ...}`` of a checkpoint under ``eval_mode``;
    ``test_result`` is under the checkpoint's own protocol, as the run reported it."""
    from recbole.utils import set_color

    from recbole_usr.evaluation.seen_items import own_protocol
    from recbole_usr.quick_start import load_data_and_model

    config, model, _, train_data, valid_data, test_data = load_data_and_model(model_file, eval_mode=eval_mode)
    valid_result, test_by_protocol, seen_share, seconds = evaluate_valid_and_test(
        config, model, train_data, valid_data, test_data
    )
    mode, protocol = config["eval_args"]["mode"]["test"], own_protocol(config)
    getLogger().info(set_color(f"valid result [{mode}]", "yellow") + f": {valid_result}")
    for name, result in test_by_protocol.items():
        getLogger().info(set_color(f"test result [{mode}, {name}]", "yellow") + f": {result}")
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "model_file": model_file,
        "eval_mode": mode,
        "protocol": protocol,
        "valid_result": dict(valid_result),
        "test_result": dict(test_by_protocol[protocol]),
        "test_result_by_protocol": {name: dict(result) for name, result in test_by_protocol.items()},
        "seen_share": seen_share,
        "eval_seconds": seconds,
    }


def run_command(argv=None):
    """Check ``--results_file``, evaluate, write the results; returns the result dict."""
    from recbole_usr.utils import check_results_file, write_results

    args = parse_args(argv)
    check_results_file(args.results_file)
    result = evaluate_checkpoint(args.model_file, args.eval_mode)
    fallback = f"{os.path.splitext(args.model_file)[0]}.{result['eval_mode']}.results.json"
    write_results(args.results_file, result, fallback)
    return result


def main(argv=None):
    """The ``recbole_usr_evaluate`` console script: exit status 0 on success."""
    from recbole_usr.utils import run_console_script

    return run_console_script(run_command, argv)


if __name__ == "__main__":
    sys.exit(main())
