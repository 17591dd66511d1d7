"""RecBole's multi-process training (``nproc``, ``world_size``, ``ip``, ``port``, ``offset``),
on CPU as well as GPU.

Why: RecBole 1.2.1 starts every process group with NCCL and puts each rank on
``cuda:<local_rank>``, so ``--nproc=2`` cannot start on a CPU machine, and its DDP wrapper
passes ``device_ids`` that torch rejects for a CPU module. Everything else is RecBole's own
mechanism, used as it is: a process per rank, ``DistributedSampler`` shards, the trainer's
gradient hooks and the ``all_gather`` of evaluation metrics. Here the backend follows the
device (gloo on CPU, NCCL on GPU), and the spawned ranks run the function they are given (the
plugin's :func:`recbole_usr.quick_start.run`, which passes itself), so plugin models, properties
and both evaluation protocols work the same with one process or many.

Nothing here is global to a user's process: the DDP-on-CPU patch is applied inside the spawned
ranks, for the duration of their run (the directories they make at once:
:mod:`recbole_usr.shared_dirs`), and unlike RecBole no rank sets ``CUDA_VISIBLE_DEVICES`` (rank
``i`` uses the ``i``-th GPU listed in ``gpu_id``).
"""

import contextlib
from unittest import mock

import torch
from recbole.config import Config


def is_distributed(config):
    """Whether this process is one rank of a multi-process run."""
    return not config["single_spec"]


class DeviceAwareConfig(Config):
    """RecBole's ``Config`` whose process group uses gloo on CPU and NCCL on GPU."""

    def _init_device(self):
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()
        settings = self.final_config_dict
        gpu_id = settings["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
        settings["gpu_id"] = gpu_id
        use_gpu = bool(settings["use_gpu"]) and torch.cuda.is_available() and len(gpu_id) > 0
        gpu_ids = [int(gpu) for gpu in gpu_id.split(",") if gpu.strip()]
        if use_gpu and len(gpu_ids) < settings["nproc"]:
            raise ValueError(f"nproc={settings['nproc']} processes need as many GPUs in gpu_id, got '{gpu_id}'.")
        if not torch.distributed.is_initialized():  # a Config may be built twice in one rank
            torch.distributed.init_process_group(
                backend="nccl" if use_gpu else "gloo", rank=settings["local_rank"] + settings["offset"],
                world_size=settings["world_size"], init_method=f"tcp://{settings['ip']}:{settings['port']}",
            )
        if use_gpu:  # rank i takes the i-th GPU of gpu_id (no CUDA_VISIBLE_DEVICES: the environment stays as is)
            settings["device"] = torch.device("cuda", gpu_ids[settings["local_rank"]])
            torch.cuda.set_device(settings["device"])
        else:
            settings["device"] = torch.device("cpu")
        settings["single_spec"] = False
        if settings["local_rank"] != 0:  # one rank logs, as in RecBole
            settings["state"] = "error"
            settings["show_progress"] = False
            settings["verbose"] = False


def cpu_aware_ddp(module, device_ids=None, **kwargs):
    """``DistributedDataParallel`` without ``device_ids`` for a CPU module (torch requires it)."""
    from torch.nn.parallel import DistributedDataParallel

    on_cpu = next(module.parameters()).device.type == "cpu"
    return DistributedDataParallel(module, device_ids=None if on_cpu else device_ids, **kwargs)


@contextlib.contextmanager
def recbole_patched_for_ranks():
    """Within the context, RecBole's trainers wrap CPU models in DDP the way torch accepts (the
    directories every rank makes at once: :func:`recbole_usr.shared_dirs.recbole_dirs_shared`,
    applied by every plugin run)."""
    import recbole.trainer.trainer as recbole_trainer

    with mock.patch.object(recbole_trainer, "DistributedDataParallel", cpu_aware_ddp):
        yield


def shared_value(value, config):
    """Rank 0's ``value`` on every rank (e.g. the checkpoint path every rank must read)."""
    if not is_distributed(config):
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def gathered(value, config):
    """``[value of rank 0, value of rank 1, ...]`` (just ``[value]`` in one process)."""
    if not is_distributed(config):
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def wait_for_all_ranks(config):
    """A barrier: e.g. no rank reads the best checkpoint before rank 0 has written it."""
    if is_distributed(config):
        torch.distributed.barrier()


def rank_worker(local_rank, run, run_args, queue):
    """One spawned rank: ``run(model, dataset, config_file_list, config_dict)`` with
    ``local_rank`` set; rank 0 returns the result."""
    model, dataset, config_file_list, config_dict = run_args
    config_dict = {**config_dict, "local_rank": local_rank}
    try:
        with recbole_patched_for_ranks():
            result = run(model, dataset, config_file_list, config_dict)
        if local_rank == 0:
            queue.put(result)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()  # no rank tears the group down while another still uses it
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_processes(run, model, dataset, config_file_list=None, config_dict=None, nproc=2, world_size=-1,
                  ip="localhost", port="5678", group_offset=0):
    """RecBole's ``run(..., nproc=...)`` for the plugin: ``nproc`` local ranks of a group of
    ``world_size`` processes (all machines together; -1 = nproc), ranks ``group_offset`` to
    ``group_offset + nproc - 1`` on this machine, each calling ``run`` (a module-level function,
    so the spawned ranks can import it); rank 0's result."""
    import torch.multiprocessing as mp

    if nproc < 1:
        raise ValueError(f"nproc must be a positive integer, got {nproc!r}.")
    world_size = nproc if world_size in (None, -1) else world_size
    if world_size < nproc + group_offset:
        raise ValueError(f"world_size={world_size} is smaller than nproc + group_offset = {nproc + group_offset}.")
    config_dict = {**(config_dict or {}), "world_size": world_size, "ip": ip, "port": str(port), "nproc": nproc,
                   "offset": group_offset}
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(rank_worker, args=(run, (model, dataset, config_file_list, config_dict), queue), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()
