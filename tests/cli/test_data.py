"""``verdi data qrnn``: a wrong index or a missing output folder is one line naming it, never a traceback."""

from __future__ import annotations

from click.testing import CliRunner

from aiida_qrnn.cli.data import clusters
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import make_water_clusters


def invoke(*arguments: str):
    return CliRunner().invoke(clusters, list(arguments), catch_exceptions=False)


def test_show_an_index_that_does_not_exist(aiida_profile):
    """Before: IndexError with a traceback."""
    node = ClusterSetData.from_atoms(make_water_clusters(3)).store()
    result = invoke('show', str(node.pk), '-i', '1', '-i', '99')
    assert result.exit_code == 2
    assert f"Invalid value for '-i' / '--index': cluster 99 does not exist: ClusterSetData<{node.pk}> has 3 " \
           'clusters, numbered 0 to 2.' in result.output
    assert 'Traceback' not in result.output and '"n_clusters"' not in result.output
    assert invoke('show', str(node.pk), '-i', '-1').exit_code == 2
    shown = invoke('show', str(node.pk), '-i', '2')
    assert shown.exit_code == 0 and 'cluster 2: H6O3' in shown.output


def test_export_into_a_missing_folder(aiida_profile, tmp_path):
    """Before: FileNotFoundError with a traceback."""
    node = ClusterSetData.from_atoms(make_water_clusters(2)).store()
    target = tmp_path / 'missing' / 'x.xyz'
    result = invoke('export', str(node.pk), str(target))
    assert result.exit_code == 2
    assert f"Invalid value for 'OUTPUT': the folder '{target.parent}' of {target} does not exist." in result.output
    assert not target.parent.exists()
    assert invoke('export', str(node.pk), str(tmp_path / 'x.xyz')).exit_code == 0
