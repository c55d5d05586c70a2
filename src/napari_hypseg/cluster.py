"""Dask clusters for ``hypseg segment --scheduler``: the one tested SLURM configuration (docs/scaling.md).

A worker is one process with one thread: torch parallelises the convolution
inside a block, and a second thread per process would only contend for the
same cores. With ``gpus`` each job asks SLURM for that many GPUs and runs one
worker per GPU (``CUDA_VISIBLE_DEVICES`` is set by SLURM per job; ``--device
auto`` on the workers then embeds on it).
"""

from __future__ import annotations

#: module every hypseg dask worker imports when it starts (``dask worker --preload ...``)
WORKER_PRELOAD = "napari_hypseg.segmentation.worker_preload"


def slurm_cluster(
    *,
    queue: str | None = None,
    cores: int = 8,
    memory: str = "32GB",
    gpus: int = 0,
    walltime: str = "02:00:00",
    account: str | None = None,
    **kwargs,
):
    """A ``dask_jobqueue.SLURMCluster`` whose jobs each run ``max(gpus, 1)`` single-threaded workers.

    Call ``.scale(jobs=N)`` (or ``.adapt``) on it and pass ``cluster.scheduler_address``
    to ``hypseg segment --scheduler``, or use it from Python with ``distributed.Client(cluster)``.
    """
    from dask_jobqueue import SLURMCluster  # noqa: PLC0415 - optional: pip install napari-hypseg[hpc]

    processes = max(gpus, 1)
    extra = list(kwargs.pop("job_extra_directives", []))
    worker_args = [*kwargs.pop("worker_extra_args", []), "--preload", WORKER_PRELOAD]
    if gpus:
        extra.append(f"--gres=gpu:{gpus}")
    return SLURMCluster(
        # dask threads = cores // processes, so "cores" is the worker count; SLURM still reserves job_cpu cores
        queue=queue,
        account=account,
        cores=processes,
        processes=processes,
        job_cpu=cores,
        memory=memory,
        walltime=walltime,
        job_extra_directives=extra,
        worker_extra_args=worker_args,
        # torch's threads per worker: the job's cores shared among its workers
        job_script_prologue=[
            f"export OMP_NUM_THREADS={max(1, cores // processes)}",
            *kwargs.pop("job_script_prologue", []),
        ],
        **kwargs,
    )
