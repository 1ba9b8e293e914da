"""Fine-tuning and evaluation on the paper's task families (PROTOCOL.md).

``run_finetune`` is the library entry point; ``aveyb finetune / sweep / report / quickstart``
wrap it. Heavy dependencies are imported inside the functions that need them.
"""

from aveyb.tasks.config import FinetuneConfig, build_config
from aveyb.tasks.registry import REGISTRY, get_task, list_tasks

__all__ = ["REGISTRY", "FinetuneConfig", "build_config", "get_task", "list_tasks", "run_finetune"]


def run_finetune(*args, **kwargs):
    from aveyb.tasks.runner import run_finetune as _run

    return _run(*args, **kwargs)
