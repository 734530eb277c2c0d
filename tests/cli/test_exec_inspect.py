"""``aiida-qrnn-exec inspect``: a summary for an intact set, one line naming the file for a damaged or lying one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_qrnn.jobs.inspect import inspect
from aiida_qrnn.core.dataset import ClusterArrays, write_cluster_set
from tests.conftest import make_water_clusters
from tests.core.test_dataset import change_dataset


@pytest.fixture
def labelled_file(tmp_path):
    return write_cluster_set(tmp_path / 'set.h5', ClusterArrays.from_atoms(make_water_clusters(4, labelled=True)),
                             level_of_theory='gfn2-xtb')


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
    def flip(values):
        values.reshape(-1).view(np.uint8)[2] ^= 0x08

    change_dataset(labelled_file, dataset, flip, sealed=False)
    assert run_inspect(labelled_file).exit_code == 0  # the header alone is intact
    result = run_inspect(labelled_file, '--verify')
    assert result.exit_code == 1
    assert f"set.h5': the checksum of dataset '{dataset}' does not match" in result.output
    assert isinstance(result.exception, SystemExit) and 'Traceback' not in result.output


def test_byte_flipped_files_give_one_line_naming_the_file(labelled_file, tmp_path):
    """Before: 4 of 5 randomly byte-flipped files gave h5py's RuntimeError, KeyError or OSError."""
    data = labelled_file.read_bytes()
    rng = np.random.default_rng(11)
    for trial in range(20):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), size=2):
            damaged[position] ^= 1 << int(rng.integers(8))
        path = tmp_path / f'flipped{trial}.h5'
        path.write_bytes(bytes(damaged))
        result = run_inspect(path)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert result.output.count('\n') == 1 and f"flipped{trial}.h5': damaged cluster set" in result.output
