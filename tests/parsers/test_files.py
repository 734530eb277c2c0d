"""``read_text_files``: stored files, loose temporary files and the members of a job's output archive."""

from __future__ import annotations

import io
import tarfile

from aiida import orm

from aiida_qrnn.parsers.files import read_text_files


def test_archive_members_loose_files_and_stored_files(tmp_path):
    stored = orm.FolderData()
    stored.base.repository.put_object_from_filelike(io.BytesIO(b'6.5.1\n'), 'xtb_version.out')
    (tmp_path / 'c000000.out').write_text('loose')
    (tmp_path / 'c000001.err').write_bytes(b'bad byte \xff')
    member = tmp_path / 'c000002.gradient'
    member.write_text('from the archive')
    with tarfile.open(tmp_path / 'outputs.tar', 'w') as archive:
        archive.add(member, arcname=member.name)
    member.unlink()

    files = read_text_files(stored, tmp_path)
    assert files == {
        'xtb_version.out': '6.5.1\n', 'c000000.out': 'loose', 'c000001.err': 'bad byte \ufffd',
        'c000002.gradient': 'from the archive',
    }


def test_truncated_archive_is_skipped(tmp_path):
    """A job killed while packing leaves a broken archive beside the loose files: the loose files are read."""
    (tmp_path / 'c000000.out').write_text('loose')
    (tmp_path / 'outputs.tar').write_bytes(b'\x00' * 100 + b'not a tar')
    assert read_text_files(orm.FolderData(), tmp_path) == {'c000000.out': 'loose'}
