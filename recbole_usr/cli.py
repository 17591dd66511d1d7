"""``run_recbole_usr``: RecBole's ``run_recbole.py`` flags, with plugin models and properties."""

import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train and test a recbole-usr or RecBole model. Any other --key=value "
        "overrides a property, as in RecBole."
    )
    parser.add_argument("--model", "-m", type=str, default="UnifiedSASRec", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    parser.add_argument("--results_file", type=str, default=None, help="write the results as JSON here")
    # RecBole's multi-process flags (run_recbole.py); see recbole_usr/distributed.py
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (-1: nproc)")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default="5678", help="free port on the rank-0 machine")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    args, rest = parser.parse_known_args(argv)
    overrides = {}
    for arg in rest:
        if not arg.startswith("--") or "=" not in arg:
            parser.error(f"expected --key=value, got '{arg}'")
        key, value = arg[2:].split("=", 1)
        if key in overrides and overrides[key] != value:
            parser.error(f"--{key} given twice with different values")
        overrides[key] = value  # RecBole's Config converts strings exactly as on its command line
    config_files = args.config_files.split() if args.config_files else None
    return args, config_files, overrides


def run_command(argv=None):
    """Check ``--results_file``, train and test, write the results and, beside them, the
    training curves (``out.json`` -> ``out.png``); returns the result dict, with the plot's
    summary under ``plot`` when one was drawn."""
    from recbole_usr.quick_start import run
    from recbole_usr.training_plot import plot_path, plot_training
    from recbole_usr.utils import check_results_file, results_fallback_path, write_results

    args, config_files, overrides = parse_args(argv)
    check_results_file(args.results_file)
    result = run(args.model, args.dataset, config_file_list=config_files, config_dict=overrides, nproc=args.nproc,
                 world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset)
    write_results(args.results_file, result, results_fallback_path(result))
    if args.results_file:  # after the results, so a plotting failure cannot lose them
        result["plot"] = plot_training(result, plot_path(args.results_file))
    return result


def main(argv=None):
    """The ``run_recbole_usr`` console script: exit status 0 on success."""
    from recbole_usr.utils import run_console_script

    return run_console_script(run_command, argv)


if __name__ == "__main__":
    sys.exit(main())
