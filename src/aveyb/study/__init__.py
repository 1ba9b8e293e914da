"""Studies: the paper's comparison and ablations, from pretraining to verdicts, as one
resumable command (``aveyb study run``). See :mod:`aveyb.study.spec` for the specification,
:mod:`aveyb.study.builtin` for the built-in studies and :mod:`aveyb.study.report` for what
the report holds."""

from aveyb.study.spec import Finetuning, Study, StudyError, Variant

__all__ = ["Finetuning", "Study", "StudyError", "Variant"]
