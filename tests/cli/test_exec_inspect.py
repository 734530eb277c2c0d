"""``aiida-qrnn-exec inspect``: a summary for an intact set, one line naming the file for a damaged or lying one."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aiida_qrnn.jobs.inspect import inspect
from aiida_qrnn.testing.files import flip_bit_in_dataset, randomly_damaged_copies


def run_inspect(*arguments):
    return CliRunner().invoke(inspect, [str(argument) for argument in arguments])


def test_intact_file_prints_its_verified_summary(labelled_file):
    result = run_inspect(labelled_file, '--verify')
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary['elements'] == ['H', 'O'] and summary['format_version'] == 2


@pytest.mark.parametrize('dataset', ['clusters/energy', 'atoms/forces'])
def test_verify_catches_a_changed_label_byte(labelled_file, dataset):
    """Before: a changed byte in clusters/energy or atoms/forces passed --verify (ids cover geometry only)."""
    flip_bit_in_dataset(labelled_file, dataset, byte=2, mask=0x08)
    assert run_inspect(labelled_file).exit_code == 0  # the header alone is intact
    result = run_inspect(labelled_file, '--verify')
    assert result.exit_code == 1
    assert f"set.h5': the checksum of dataset '{dataset}' does not match" in result.output
    assert isinstance(result.exception, SystemExit) and 'Traceback' not in result.output


def test_byte_flipped_files_give_one_line_naming_the_file(labelled_file, tmp_path):
    """Before: 4 of 5 randomly byte-flipped files gave h5py's RuntimeError, KeyError or OSError."""
    damaged = randomly_damaged_copies(labelled_file, tmp_path, n_copies=20, flips_per_copy=2, seed=11, prefix='flipped')
    for trial, path in enumerate(damaged):
        result = run_inspect(path)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert result.output.count('\n') == 1 and f"flipped{trial}.h5': damaged cluster set" in result.output
