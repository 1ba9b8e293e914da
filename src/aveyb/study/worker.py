"""``python -m aveyb.study.worker ROOT JOB_ID``: run one job of a study (what the local executor spawns)."""

from __future__ import annotations

import sys

BUSY_EXIT_CODE = 75  # EX_TEMPFAIL: the job runs elsewhere; this run leaves it to that one


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m aveyb.study.worker STUDY_DIR JOB_ID", file=sys.stderr)
        return 2
    from aveyb.study.jobs import JobBusy, run_job

    _die_with_parent()
    try:
        run_job(args[0], args[1])
    except JobBusy as err:  # another run of the study is training it: not a failure of this one
        print(f"aveyb study: {err}", file=sys.stderr)
        return BUSY_EXIT_CODE
    except Exception as err:  # recorded in STUDY_DIR/jobs/failed by run_job
        print(f"aveyb study: job {args[1]} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the driver dies, so that no job outlives its study run
    (a second run would otherwise train the same job twice). Elsewhere the job lock guards."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the driver died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
