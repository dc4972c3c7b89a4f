"""Writing a file so that a reader finds the old contents or the new, never a part of either."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents into.

    It is a temporary sibling, ``.<name>.tmp-*``; when the block ends it is flushed, fsynced and
    renamed over ``path``. An error in the block leaves ``path`` as it was and no temporary
    behind.
    """
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
