"""Idempotent creation of the AiiDA profile, the ``localhost`` computer and the codes aiida-qrnn uses.

Two kinds of profile:

* **embedded** (default): ``core.sqlite_dos`` storage and AiiDA's built-in ``core.zeromq`` broker. It needs no
  services, yet ``verdi daemon start`` and ``submit`` work.
* **production**: ``core.psql_dos`` storage on PostgreSQL and ``core.rabbitmq``.

Running the set-up again changes nothing that already exists; it only adds what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import typing as t

if t.TYPE_CHECKING:
    from aiida.manage.configuration.profile import Profile
    from aiida.orm import Computer

__all__ = ('CODES', 'CONSUMER_TIMEOUT_FIX', 'SetupError', 'SetupReport', 'check_consumer_timeout', 'setup_profile')

EMBEDDED_PROFILE = 'qrnn'
PRODUCTION_PROFILE = 'qrnn-production'
LOCALHOST = 'localhost'
#: Code label -> (executable on PATH, default CalcJob plugin or None until that plugin exists).
CODES: dict[str, tuple[str, str | None]] = {
    'xtb': ('xtb', 'qrnn.xtb'),
    'psi4': ('psi4', 'qrnn.psi4'),
    'aiida-qrnn-exec': ('aiida-qrnn-exec', None),
}
#: Environment set for every job on localhost: one BLAS/OpenMP thread per process (two BLAS pools on two cores
#: make a Psi4 gradient three times slower; xtb likewise).
LOCALHOST_PREPEND = 'export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1'
#: Seconds ``verdi`` waits for the daemon's answer. AiiDA's default (2 s) is shorter than ``verdi daemon stop`` takes
#: to see its workers exit on a loaded machine, which then printed "Critical: Connection to the daemon timed out."
#: although the daemon stopped.
DAEMON_TIMEOUT_S = 30
#: The line of RabbitMQ's ``advanced.config`` that lets a task stay unacknowledged for as long as its process runs.
CONSUMER_TIMEOUT_FIX = '[{rabbit,[{consumer_timeout,undefined}]}].'


class SetupError(RuntimeError):
    """The set-up could not be completed; the message says what is missing and how to fix it."""


@dataclasses.dataclass
class SetupReport:
    """What ``setup_profile`` found (``existing``) and made (``created``)."""

    profile: str
    storage_backend: str
    broker_backend: str | None
    created: list[str] = dataclasses.field(default_factory=list)
    existing: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


def setup_profile(
    name: str | None = None, *, production: bool = False, email: str = 'qrnn@localhost',
    postgres_host: str = '127.0.0.1', postgres_port: int = 5432, postgres_user: str = 'postgres',
    postgres_password: str = '', set_default: bool = True,
) -> SetupReport:
    """Create (or complete) the profile ``name``, load it, and add ``localhost`` and the codes found on PATH."""
    from aiida.manage.configuration import get_config, load_profile

    name = name or (PRODUCTION_PROFILE if production else EMBEDDED_PROFILE)
    config = get_config(create=True)
    wanted_storage = 'core.psql_dos' if production else 'core.sqlite_dos'
    wanted_broker = 'core.rabbitmq' if production else 'core.zeromq'

    if name in config.profile_names:
        profile = config.get_profile(name)
        if profile.storage_backend != wanted_storage or profile.process_control_backend != wanted_broker:
            raise SetupError(
                f'profile {name!r} exists with storage {profile.storage_backend!r} and broker '
                f'{profile.process_control_backend!r}, not {wanted_storage!r} + {wanted_broker!r}; choose another '
                'name with --profile, or delete it with `verdi profile delete`.'
            )
        report = SetupReport(name, wanted_storage, wanted_broker, existing=[f'profile {name}'])
    else:
        profile = _create_profile(config, name, production, email, postgres_host, postgres_port, postgres_user,
                                  postgres_password)
        report = SetupReport(name, wanted_storage, wanted_broker, created=[f'profile {name}'])
    if set_default and config.default_profile_name != name:
        config.set_default_profile(name, overwrite=True)
        config.store()
    if config.get_option('daemon.timeout', scope=name) < DAEMON_TIMEOUT_S:
        config.set_option('daemon.timeout', DAEMON_TIMEOUT_S, scope=name)
        config.store()
        report.created.append(f'daemon.timeout {DAEMON_TIMEOUT_S} s (verdi daemon stop waits for the workers)')

    if production:
        warning = check_consumer_timeout()
        if warning:
            report.warnings.append(warning)
    load_profile(name, allow_switch=True)
    computer = _ensure_localhost(profile, report)
    _ensure_codes(computer, report)
    return report


def check_consumer_timeout(rabbitmqctl: str = 'rabbitmqctl') -> str | None:
    """A warning when the local RabbitMQ broker would cancel a task unacknowledged for its ``consumer_timeout``.

    AiiDA acknowledges a process task only when the process ends, so a work chain that runs longer than the
    timeout (RabbitMQ's default: 30 min) has its task requeued and its daemon worker's channel closed. The value
    is read from the running broker with ``rabbitmqctl eval`` (needs the Erlang cookie, i.e. root or the rabbitmq
    user, on the broker's host); where that is impossible the check is skipped silently, since the broker may
    live elsewhere.
    """
    executable = shutil.which(rabbitmqctl) or shutil.which(rabbitmqctl, path='/usr/sbin:/usr/local/sbin')
    if executable is None:
        return None
    try:
        result = subprocess.run([executable, 'eval', 'application:get_env(rabbit, consumer_timeout).'],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = result.stdout.strip()
    if result.returncode != 0 or value == 'undefined':
        return None
    match = re.fullmatch(r'\{ok,\s*(\d+)\}', value)
    if match is None:  # e.g. {ok,undefined} or an unexpected answer: nothing to warn about
        return None
    minutes = int(match.group(1)) / 60_000
    return (
        f'RabbitMQ cancels a task after its consumer_timeout of {minutes:g} min, which kills longer AiiDA processes. '
        f'Add `{CONSUMER_TIMEOUT_FIX}` to /etc/rabbitmq/advanced.config and restart RabbitMQ.'
    )


def _create_profile(config, name: str, production: bool, email: str, postgres_host: str, postgres_port: int,
                    postgres_user: str, postgres_password: str) -> Profile:
    from aiida.manage.configuration import create_profile
    from aiida.plugins import BrokerFactory

    if production:
        from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

        try:
            broker_config = detect_rabbitmq_config()
        except ConnectionError as exception:
            raise SetupError(
                f'RabbitMQ is not reachable ({exception}). Start it (e.g. `rabbitmq-server -detached`).'
            ) from None
        storage_config = _create_postgres_database(name, postgres_host, postgres_port, postgres_user,
                                                   postgres_password)
        storage_config['repository_uri'] = (pathlib.Path(config.dirpath) / 'repository' / name).as_uri()
        storage_backend, broker_backend = 'core.psql_dos', 'core.rabbitmq'
    else:
        storage_config = {'filepath': str(pathlib.Path(config.dirpath) / 'storage' / name)}
        storage_backend, broker_backend = 'core.sqlite_dos', 'core.zeromq'
        broker_config = BrokerFactory(broker_backend).get_default_config()
    profile = create_profile(
        config, name=name, email=email, storage_backend=storage_backend, storage_config=storage_config,
        broker_backend=broker_backend, broker_config=broker_config,
    )
    config.set_option('runner.poll.interval', 1, scope=name)
    config.store()
    return profile


def _create_postgres_database(name: str, host: str, port: int, user: str, password: str) -> dict[str, t.Any]:
    """Create a role and a database for profile ``name``; return the ``core.psql_dos`` storage configuration.

    Done here rather than through ``verdi presto``'s helper, which insists on the ``en_US.UTF-8`` locale that
    many servers (this Debian image's included) do not have: the database takes the server's default locale.
    """
    import secrets

    import psycopg
    from psycopg import sql

    database = role = f'aiida-qrnn-{name}'
    role_password = secrets.token_hex(16)
    try:
        connection = psycopg.connect(host=host, port=port, user=user, password=password or None, dbname='postgres',
                                     autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exception:
        raise SetupError(
            f'PostgreSQL is not reachable at {host}:{port} as user {user!r} ({str(exception).strip()}). Start it '
            '(e.g. `pg_ctlcluster 15 main start`) or pass --postgres-host/--postgres-port/--postgres-user.'
        ) from None
    with connection:
        if connection.execute('SELECT 1 FROM pg_database WHERE datname = %s', (database,)).fetchone():
            raise SetupError(
                f'PostgreSQL database {database!r} exists already but no AiiDA profile {name!r} uses it; drop it '
                f'(`dropdb -h {host} -p {port} -U {user} {database}`) or choose another profile name.'
            )
        try:
            if connection.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (role,)).fetchone():
                connection.execute(sql.SQL('ALTER ROLE {} WITH LOGIN PASSWORD {}').format(
                    sql.Identifier(role), sql.Literal(role_password)))
            else:
                connection.execute(sql.SQL('CREATE ROLE {} WITH LOGIN PASSWORD {}').format(
                    sql.Identifier(role), sql.Literal(role_password)))
            connection.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                sql.Identifier(database), sql.Identifier(role)))
        except psycopg.Error as exception:
            raise SetupError(
                f'PostgreSQL at {host}:{port} refused to create role/database {database!r} as {user!r}: '
                f'{str(exception).strip()}'
            ) from None
    return {
        'database_engine': 'postgresql_psycopg',
        'database_hostname': host,
        'database_port': port,
        'database_name': database,
        'database_username': role,
        'database_password': role_password,
    }


def _ensure_localhost(profile: Profile, report: SetupReport) -> Computer:
    from aiida.common.exceptions import NotExistent
    from aiida.manage.configuration import get_config
    from aiida.orm import Computer

    try:
        computer = Computer.collection.get(label=LOCALHOST)
        report.existing.append(f'computer {LOCALHOST}')
    except NotExistent:
        workdir = pathlib.Path(get_config().dirpath) / 'scratch' / profile.name
        computer = Computer(
            label=LOCALHOST, hostname='localhost', description='This machine, set up by `aiida-qrnn setup`',
            transport_type='core.local', scheduler_type='core.direct', workdir=str(workdir),
        ).store()
        computer.set_prepend_text(LOCALHOST_PREPEND)
        computer.set_minimum_job_poll_interval(1)
        computer.set_default_mpiprocs_per_machine(1)
        report.created.append(f'computer {LOCALHOST}')
    if not computer.is_configured:
        computer.configure(safe_interval=0)
    return computer


def _ensure_codes(computer: Computer, report: SetupReport) -> None:
    from aiida.common.exceptions import NotExistent
    from aiida.orm import InstalledCode, load_code

    for label, (executable, plugin) in CODES.items():
        full_label = f'{label}@{computer.label}'
        # The package's own executable sits beside the running interpreter even when its venv is not on PATH.
        search_path = os.pathsep.join([os.environ.get('PATH', ''), str(pathlib.Path(sys.executable).parent)])
        path = shutil.which(executable, path=search_path)
        try:
            existing = load_code(full_label)
        except NotExistent:
            existing = None
        if existing is not None:
            if path is None or str(existing.filepath_executable) == path:
                report.existing.append(f'code {full_label}')
                continue
            # Codes are immutable: keep the old one (its calculations point to it) under another label.
            existing.label = f'{label}-{existing.pk}'
            report.existing.append(
                f'code {full_label} pointed to {existing.filepath_executable}, now {path}; the old code is kept '
                f'as {existing.label}@{computer.label}'
            )
        if path is None:
            report.skipped.append(f'code {full_label} ({executable!r} is not on PATH)')
            continue
        InstalledCode(
            label=label, computer=computer, filepath_executable=path, default_calc_job_plugin=plugin,
            description=f'{executable} found at {path} by `aiida-qrnn setup`',
        ).store()
        report.created.append(f'code {full_label}')
