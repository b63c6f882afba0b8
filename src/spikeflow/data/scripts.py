"""Ending a script whose dataset is missing the way argparse ends on a bad argument."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from spikeflow.data.datasets.base import DatasetNotFoundError

__all__ = ["exit_on_missing_data"]


def exit_on_missing_data(
    main: Callable[[], object],
    *,
    root_option: str | None = None,
    download_option: str | None = None,
    dataset: str = "N-MNIST",
) -> None:
    """Run a script's ``main()``; a :class:`DatasetNotFoundError` ends it with one line
    ``<script>: error: <what is missing, where>`` on stderr and exit status 2, not a
    traceback.

    Args:
        main: the script's entry point.
        root_option: the script's option that points at the data (``"--root"``). Given,
            the library's ``Pass download=True`` advice, which a script user cannot
            follow, is replaced by it (the script does not download).
        download_option: the script's own download flag (``"--download"``), named in
            that advice's place instead (the script downloads).
        dataset: what the folder holds, named in the ``root_option`` advice.
    """
    try:
        main()
    except DatasetNotFoundError as exc:
        advice = str(exc)
        if download_option is not None:
            advice = advice.replace("Pass download=True", f"Pass {download_option}")
        elif root_option is not None:
            advice = advice.replace(
                "Pass download=True",
                f"This script does not download: point {root_option} at the folder that "
                f"holds {dataset}, or pass download=True in Python",
            )
        print(f"{os.path.basename(sys.argv[0])}: error: {advice}", file=sys.stderr)
        raise SystemExit(2) from None
