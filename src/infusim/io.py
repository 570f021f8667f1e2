"""Writing outputs safely: everything goes to a hidden sibling folder, renamed into place at the end.

A run that fails leaves no folder that looks complete. An existing output folder is replaced only
if it holds an earlier infusim output (its ``summary.json`` names infusim); anything else is refused.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from infusim.errors import OutputError

MARKER_KEY = "infusim_version"
#: Files whose ``infusim_version`` key marks a folder as an infusim output.
MARKER_FILES = ("summary.json", "validation.json")


def is_infusim_output(path: Path) -> bool:
    """Whether ``path`` is a folder an earlier infusim run wrote."""
    for name in MARKER_FILES:
        try:
            if MARKER_KEY in json.loads((path / name).read_text(encoding="utf-8")):
                return True
        except (OSError, ValueError, TypeError):
            continue
    return False


def write_folder(out: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary folder, then move it to ``out`` atomically."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError("output", f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_infusim_output(out):
        raise OutputError("output", f"{out} holds files infusim did not write; choose an empty or new folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:  # a parent that is a file, a read-only or virtual file system
        blocking = next((p for p in out.parents if p.exists()), None)
        why = (
            f"{blocking} is a file" if blocking is not None and not blocking.is_dir() else exc.strerror or exc
        )
        raise OutputError("output", f"cannot create {out}: {why}") from None
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    try:
        write(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            raise OutputError("output", f"cannot write {out}: {exc.strerror}") from None
        raise
    return out


#: Write errors that are the output location's fault, not infusim's: no space, no permission,
#: a read-only file system, a disk quota.
_NO_ROOM = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT}


def write_parquet(table: pd.DataFrame, path: Path) -> None:
    """Parquet with zstd compression and the index dropped."""
    table.to_parquet(path, index=False, compression="zstd")


def write_json(data: Any, path: Path) -> None:
    """Pretty, stable JSON (keys in insertion order)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
