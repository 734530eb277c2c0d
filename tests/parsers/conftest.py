"""Parser tests run on stored outputs of real runs, one folder per case under ``fixtures/<plugin>/<case>``."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiida import orm
from aiida.common.links import LinkType

FIXTURES = Path(__file__).parent / 'fixtures'


@pytest.fixture
def generate_calc_job_node(aiida_localhost):
    """A stored ``CalcJobNode`` of plugin ``qrnn.<plugin>`` whose retrieved folder is ``fixtures/<plugin>/<case>``."""

    def factory(plugin: str, case: str) -> orm.CalcJobNode:
        node = orm.CalcJobNode(computer=aiida_localhost, process_type=f'aiida.calculations:qrnn.{plugin}')
        node.store()
        retrieved = orm.FolderData()
        for path in sorted((FIXTURES / plugin / case).iterdir()):
            retrieved.base.repository.put_object_from_file(path, path.name)
        retrieved.base.links.add_incoming(node, LinkType.CREATE, 'retrieved')
        retrieved.store()
        return node

    return factory
