"""``python -m benchmarks.child RESULTS.json <script.py | -m module> [args]``

Runs a benchmark command in this process, then adds to the JSON it wrote what it actually ran
with, which only this process knows: ``torch_threads`` (``torch.get_num_threads()``),
``device`` (``cuda: <name>`` when CUDA was used, else ``cpu``) and the ``versions`` of the
packages it imported. ``benchmarks.run`` starts every run through it.
"""

import json
import platform
import runpy
import sys
from importlib import metadata

PACKAGES = {"torch": "torch", "numpy": "numpy", "recbole": "recbole", "sentence-transformers": "sentence_transformers"}


def runtime():
    import torch

    versions = {"python": platform.python_version()}
    for name, module in PACKAGES.items():
        loaded = sys.modules.get(module)
        try:
            versions[name] = getattr(loaded, "__version__", None) or metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    used_cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    device = f"cuda: {torch.cuda.get_device_name(0)}" if used_cuda else "cpu"
    return {"torch_threads": torch.get_num_threads(), "device": device, "versions": versions}


def main(argv=None):
    raw, target, *args = sys.argv[1:] if argv is None else argv
    try:
        if target == "-m":
            module, *args = args
            sys.argv = [module, *args]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [target, *args]
            runpy.run_path(target, run_name="__main__")
    except SystemExit as done:
        if done.code not in (None, 0):
            raise
    with open(raw) as f:
        result = json.load(f)
    result.update(runtime())
    with open(raw, "w") as f:
        json.dump(result, f, indent=2, default=float)


if __name__ == "__main__":
    main()
