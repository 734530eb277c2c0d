"""Reading the retrieved files of a labelling job in one pass."""

from __future__ import annotations

import logging
import pathlib
import tarfile
import tempfile

from aiida import orm

__all__ = ('read_text_files',)

LOGGER = logging.getLogger(__name__)


def read_text_files(folder: orm.FolderData, temporary_folder: str | pathlib.Path | None = None) -> dict[str, str]:
    """Every top-level file of ``folder`` and of the job's ``temporary_folder`` as text (name -> content).

    A ``.tar`` archive in ``temporary_folder`` contributes its members instead of itself (an unreadable one is
    skipped with a warning: the loose files a killed job leaves are read instead). Stray non-UTF-8 bytes are
    replaced. The stored files are copied out once: reading them one by one from a stored node rebuilds the node's
    repository index for every file, which is quadratic in the number of files.
    """
    with tempfile.TemporaryDirectory() as work:
        folder.base.repository.copy_tree(work)
        files = {path.name: _text(path.read_bytes()) for path in pathlib.Path(work).iterdir() if path.is_file()}
    if temporary_folder is None:
        return files
    for path in sorted(pathlib.Path(temporary_folder).iterdir()):
        if path.is_file() and path.suffix == '.tar':
            files.update(_archive_members(path))
        elif path.is_file():
            files[path.name] = _text(path.read_bytes())
    return files


def _archive_members(path: pathlib.Path) -> dict[str, str]:
    try:
        with tarfile.open(path) as archive:
            return {
                pathlib.PurePath(member.name).name: _text(archive.extractfile(member).read())
                for member in archive.getmembers() if member.isfile()
            }
    except (tarfile.TarError, OSError) as exception:
        LOGGER.warning(f'{path.name}: unreadable archive skipped ({exception})')
        return {}


def _text(content: bytes) -> str:
    return content.decode('utf-8', errors='replace')
