"""``run_recbole_usr``: RecBole's ``run_recbole.py`` flags, with plugin models and properties."""

import argparse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train and test a recbole-usr or RecBole model. Any other --key=value "
        "overrides a property, as in RecBole."
    )
    parser.add_argument("--model", "-m", type=str, default="UnifiedSASRec", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    parser.add_argument("--results_file", type=str, default=None, help="write the results as JSON here")
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


def main(argv=None):
    from recbole_usr.malloc import keep_freed_memory

    keep_freed_memory()
    from recbole_usr.quick_start import run
    from recbole_usr.utils import write_results

    args, config_files, overrides = parse_args(argv)
    result = run(args.model, args.dataset, config_file_list=config_files, config_dict=overrides)
    write_results(args.results_file, result)
    return result


if __name__ == "__main__":
    main()
