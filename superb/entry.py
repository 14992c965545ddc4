"""The body of the root `run_downstream.py`: rewrite the command line, apply the shims, register
the upstreams and hand over to s3prl 0.4.18's own `run_downstream.main()`."""

from __future__ import annotations

import builtins
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger("superb")
PACKAGE_DIR = Path(__file__).resolve().parent


def task_from_checkpoint(past_exp: str):
    """The SUPERB task an `-e` checkpoint (or expdir) was trained on, from its pickled args."""
    import torch

    from .tasks import latest_checkpoint, task_of_checkpoint_contents

    path = latest_checkpoint(past_exp)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint given with -e is missing")
    # s3prl checkpoints pickle an argparse.Namespace, so full unpickling is needed (our own file)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return task_of_checkpoint_contents(checkpoint.get("Args"), checkpoint.get("Config") or {})


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    from .argv_checks import check_argv
    from .compat import apply_compat
    from .derived import ensure_derived_paths
    from .hub import register_upstreams
    from .runner_fixes import apply_runner_fixes
    from .tasks import our_parser, plan_argv

    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        our_parser().print_help()
        print("\ns3prl's own options follow.\n")
    try:
        check_argv(argv)
        plan = plan_argv(
            argv,
            os.environ,
            cuda_available=torch.cuda.is_available(),
            cpu_count=os.cpu_count() or 1,
            derive=ensure_derived_paths,
            checkpoint_task=task_from_checkpoint,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        sys.exit(f"run_downstream.py: error: {error}")
    for note in plan.notes:
        log.info(note)

    apply_compat()
    registered = register_upstreams()
    apply_runner_fixes()
    if plan.cache_features_gib is not None:
        from .feature_cache import install_feature_cache

        install_feature_cache(plan.cache_features_gib)
    if registered:
        log.info("registered upstreams: %s", ", ".join(registered))
    log.info("s3prl argv: %s", shlex.join(plan.argv))

    from s3prl.run_downstream import main as s3prl_main

    run_s3prl_main(s3prl_main, plan.argv)


def run_s3prl_main(s3prl_main: Callable[[], None], argv: Sequence[str]) -> None:
    """Call s3prl's `main()` on `argv`; our own clear errors exit without a traceback.

    s3prl's main wraps `builtins.isinstance` (hack_isinstance); it is restored afterwards, so that
    calling `superb.entry.main` again in one process (train, then evaluate) stacks no wrappers.
    """
    saved_argv, plain_isinstance = sys.argv, builtins.isinstance
    sys.argv = [sys.argv[0] if sys.argv else "run_downstream.py", *argv]
    try:
        s3prl_main()
    except (ValueError, FileNotFoundError) as error:
        if not raised_in(error, PACKAGE_DIR):
            raise
        # our loaders and guards name the file/key and what is wrong; s3prl's frames add nothing
        sys.exit(f"run_downstream.py: error: {error}")
    finally:
        builtins.isinstance = plain_isinstance
        sys.argv = saved_argv


def raised_in(error: BaseException, folder: Path) -> bool:
    """Whether the innermost frame of `error`'s traceback is in a file under `folder`."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(folder)
