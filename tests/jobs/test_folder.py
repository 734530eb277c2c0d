"""The job-folder contract: one way to fail, and every job's declaration agreeing with its CalcJob and parser."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from aiida_qrnn.calculations.analysis import AnalysisCalculation
from aiida_qrnn.calculations.classical_md import ClassicalMdCalculation
from aiida_qrnn.calculations.md import MdCalculation
from aiida_qrnn.calculations.score import ScoreCalculation
from aiida_qrnn.cli.exec import COMMANDS, cli
from aiida_qrnn.jobs.folder import ERROR_FILE, EXIT_BAD_INPUT, Job, fail
from aiida_qrnn.parsers.analysis import AnalysisParser
from aiida_qrnn.parsers.classical_md import ClassicalMdParser
from aiida_qrnn.parsers.md import MdParser
from aiida_qrnn.parsers.score import ScoreParser


def test_fail_writes_one_line_to_stderr_and_error_json(tmp_path):
    @click.command()
    def job() -> None:
        fail('bad\ninput', status=3, folder=tmp_path)

    result = CliRunner().invoke(job, [])
    assert result.exit_code == 3
    assert result.stderr.strip() == 'bad input'
    assert json.loads((tmp_path / ERROR_FILE).read_text()) == {'status': 3, 'message': 'bad input'}


def test_fail_without_folder_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        fail('no set here', folder=None)
    assert stop.value.code == EXIT_BAD_INPUT
    assert list(tmp_path.iterdir()) == []


def test_job_names_its_files_and_statuses():
    job = Job(command='classical-md', inputs={'structure': 's.extxyz'}, outputs={'summary': 'summary.json',
                                                                              'log': 'log.csv'},
              exit_statuses={2: 'UNSTABLE'}, retrieved=('summary',))
    assert job.retrieve_list() == ['summary.json', ERROR_FILE, 'classical_md.out', 'classical_md.err']
    assert job.statuses == {0: 'SUCCESS', 1: 'BAD_INPUT', 2: 'UNSTABLE'}


def test_every_registered_command_resolves_under_its_name():
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None and command.name == name


@pytest.mark.parametrize('calculation, parser', [
    (MdCalculation, MdParser), (ClassicalMdCalculation, ClassicalMdParser), (ScoreCalculation, ScoreParser),
    (AnalysisCalculation, AnalysisParser),
])
def test_job_calcjob_and_parser_agree(calculation, parser):
    """The command a CalcJob runs is registered from its job module, and every status its parser maps onto an exit
    code is one the job declares and one the CalcJob defines."""
    assert COMMANDS[calculation.JOB.command].split(':')[0] == f'aiida_qrnn.jobs.{calculation.__module__.split(".")[-1]}'
    for status, label in parser.STATUS_EXIT_CODES.items():
        assert status in calculation.JOB.statuses
        assert label in calculation.exit_codes
    assert {'ERROR_OUTPUT_FILES_MISSING', 'ERROR_READING_OUTPUT', 'ERROR_INVALID_INPUT'} <= set(calculation.exit_codes)
