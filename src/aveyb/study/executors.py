"""Where a study's jobs run.

* :class:`LocalExecutor`: this host. Each job is a subprocess (``python -m aveyb.study.worker``)
  so that a crash or an out-of-memory kill takes only that job. Jobs run in parallel, one per
  GPU slot (``CUDA_VISIBLE_DEVICES``), or one at a time on a CPU.
* :class:`SubmititExecutor`: a cluster, through submitit (Slurm), or submitit's own local
  mode. submitit is chosen over Ray because a study is a batch of independent, long,
  GPU-exclusive jobs with files for results: exactly what Slurm schedules, with no cluster
  service to run beside it; submitit pickles the job function, captures its output and
  errors per job, and its ``local`` mode runs the same path without a cluster (the tests use it).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aveyb.study.jobs import Job, record_failure
from aveyb.study.worker import BUSY_EXIT_CODE


class LocalExecutor:
    """Jobs as subprocesses on this host: ``slots`` at a time, each with its own GPU when there are GPUs."""

    def __init__(self, gpus: int | None = None, jobs_per_gpu: int = 1, data_dir: str | None = None, log=print,
                 cpu_jobs: int = 1):
        if gpus is None:
            gpus = _visible_gpus()
        self.slots = [{"CUDA_VISIBLE_DEVICES": str(g)} for g in range(gpus) for _ in range(jobs_per_gpu)]
        if not self.slots:  # a CPU: cpu_jobs at once, sharing the threads (small models use few well)
            threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
            per_job = str(max(1, threads // max(1, cpu_jobs)))
            self.slots = [{"OMP_NUM_THREADS": per_job} if cpu_jobs > 1 else {} for _ in range(max(1, cpu_jobs))]
        self.data_dir = data_dir
        self.log = log
        self._live: set = set()
        self._lock = threading.Lock()
        self._stopping = False

    def run(self, root: Path, jobs: list[Job]) -> dict[str, str]:
        """Run ``jobs``; returns ``{job id: error}`` for those that failed.

        SIGTERM or SIGINT stops the study cleanly: no new job starts and every running one
        gets SIGTERM (pretraining writes a checkpoint and exits), so the next run resumes.
        """
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)} \
            if threading.current_thread() is threading.main_thread() else {}
        try:
            return self._run(root, jobs)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @property
    def stopped(self) -> bool:
        return self._stopping

    def _stop(self, signum, frame) -> None:
        self._stopping = True
        self.log(f"[aveyb study] signal {signum}: stopping the running job(s); run the study again to resume")
        with self._lock:
            for proc in self._live:
                proc.send_signal(signal.SIGTERM)

    def _run(self, root: Path, jobs: list[Job]) -> dict[str, str]:
        free: queue.Queue = queue.Queue()
        for slot in self.slots:
            free.put(slot)
        failed: dict[str, str] = {}
        total = len(jobs)

        def one(index_job):
            index, job = index_job
            slot = free.get()
            if self._stopping:  # not a failure: the next run starts it
                free.put(slot)
                return
            try:
                where = f" on GPU {slot['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in slot else ""
                self.log(f"[aveyb study] {index}/{total} {job.id}{where}")
                code, log_path = self._spawn(root, job, slot)
                if code == BUSY_EXIT_CODE:
                    self.log(f"[aveyb study] {job.id} runs in another process: left to that run")
                elif code != 0:
                    tail = _tail(log_path)
                    failed[job.id] = f"exit code {code}; log {log_path}: {tail}"
                    self.log(f"[aveyb study] FAILED {job.id} (exit code {code}); see {log_path}")
                    if code < 0:  # killed by a signal: the worker could not record it itself
                        record_failure(root, job, f"killed by signal {-code}", tail)
            finally:
                free.put(slot)

        with ThreadPoolExecutor(max_workers=len(self.slots)) as pool:
            list(pool.map(one, enumerate(jobs, 1)))
        return failed

    def _spawn(self, root: Path, job: Job, slot: dict) -> tuple[int, Path]:
        log_path = Path(root) / "logs" / f"{job.file_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **slot, "PYTHONUNBUFFERED": "1"}
        if self.data_dir:
            env["AVEYB_DATA_DIR"] = self.data_dir
        cmd = [sys.executable, "-m", "aveyb.study.worker", str(root), job.id]
        with open(log_path, "a") as fh:
            # the driver's process group: killing the study (kill -- -PGID, Ctrl-C) reaches its jobs too
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            with self._lock:
                self._live.add(proc)
            try:
                return proc.wait(), log_path
            finally:
                with self._lock:
                    self._live.discard(proc)


class SubmititExecutor:
    """Jobs submitted through submitit: ``cluster="slurm"`` on a cluster, ``"local"`` on this host."""

    def __init__(self, cluster: str | None = None, data_dir: str | None = None, log=print, **parameters):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise RuntimeError("the submitit executor needs submitit: pip install 'aveyb[cluster]'") from None
        self.cluster = cluster
        self.data_dir = data_dir
        self.log = log
        self.parameters = {"timeout_min": 24 * 60, "gpus_per_node": 1, "tasks_per_node": 1, **parameters}

    def run(self, root: Path, jobs: list[Job]) -> dict[str, str]:
        import submitit

        from aveyb.study.jobs import run_job

        executor = submitit.AutoExecutor(folder=str(Path(root) / "submitit" / "%j"), cluster=self.cluster)
        params = dict(self.parameters)
        if executor.cluster == "local":  # the local executor knows no Slurm-only keys
            params = {k: v for k, v in params.items() if k in ("timeout_min", "gpus_per_node", "tasks_per_node")}
            if not _visible_gpus():
                params["gpus_per_node"] = 0
        executor.update_parameters(name="aveyb-study", **params)
        with executor.batch():
            handles = [(job, executor.submit(run_job, str(root), job.id, self.data_dir)) for job in jobs]
        self.log(f"[aveyb study] submitted {len(handles)} job(s) through submitit ({executor.cluster})")
        failed = {}
        for job, handle in handles:
            try:
                handle.result()
                self.log(f"[aveyb study] done {job.id}")
            except Exception as err:  # submitit re-raises the job's error, or reports its failure
                failed[job.id] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
                self.log(f"[aveyb study] FAILED {job.id}: {failed[job.id]}")
        return failed


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
