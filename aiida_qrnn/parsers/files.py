"""Reading the retrieved files of a labelling job in one pass."""

from __future__ import annotations

import pathlib
import tempfile

from aiida import orm

__all__ = ('read_text_files',)


def read_text_files(folder: orm.FolderData) -> dict[str, str]:
    """Every top-level file of ``folder`` as text (name -> content), stray non-UTF-8 bytes replaced.

    The files are copied out once: reading them one by one from a stored node rebuilds the node's repository
    index for every file, which is quadratic in the number of files (a batch has several per cluster).
    """
    with tempfile.TemporaryDirectory() as work:
        folder.base.repository.copy_tree(work)
        return {
            path.name: path.read_bytes().decode('utf-8', errors='replace')
            for path in pathlib.Path(work).iterdir() if path.is_file()
        }
