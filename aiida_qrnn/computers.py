"""Remote computers for aiida-qrnn: a SLURM cluster reached over SSH (``core.ssh_async`` + ``core.slurm``).

SLURM settings that AiiDA keeps per calculation (partition, account, GPU requests) are stored once on the computer
as the computer property ``qrnn_scheduler_options``; :func:`scheduler_options` merges them into a calculation's
``metadata.options``, so users and work chains ask for a GPU with one number instead of writing ``#SBATCH`` lines.
"""

from __future__ import annotations

import asyncio
import shlex
import typing as t

if t.TYPE_CHECKING:
    from aiida.orm import Computer

__all__ = ('REMOTE_EXECUTABLES', 'add_slurm_computer', 'gpu_scheduler_commands', 'scheduler_options')

#: Code label -> (executable name looked up on the remote, default CalcJob plugin).
REMOTE_EXECUTABLES: dict[str, tuple[str, str | None]] = {
    'xtb': ('xtb', 'qrnn.xtb'),
    'psi4': ('psi4', 'qrnn.psi4'),
    'aiida-qrnn-exec': ('aiida-qrnn-exec', None),
}
SCHEDULER_OPTIONS_PROPERTY = 'qrnn_scheduler_options'


def gpu_scheduler_commands(gpus: int) -> str:
    """``#SBATCH`` line requesting ``gpus`` GPUs per node, or an empty string for none."""
    if not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f'gpus must be a non-negative integer, got {gpus!r}.')
    return f'#SBATCH --gres=gpu:{gpus}' if gpus else ''


def scheduler_options(computer: Computer, *, gpus: int | None = None, **overrides: t.Any) -> dict[str, t.Any]:
    """The ``metadata.options`` for a job on ``computer``: its stored defaults, a GPU request, then ``overrides``."""
    options = dict(computer.get_property(SCHEDULER_OPTIONS_PROPERTY, {}))
    if gpus is not None:
        lines = [line for line in options.get('custom_scheduler_commands', '').splitlines()
                 if not line.startswith('#SBATCH --gres=gpu')]
        lines.append(gpu_scheduler_commands(gpus))
        options['custom_scheduler_commands'] = '\n'.join(line for line in lines if line)
        if not options['custom_scheduler_commands']:
            del options['custom_scheduler_commands']
    options.update(overrides)
    return options


def add_slurm_computer(
    label: str, host: str, workdir: str, *, partition: str | None = None, account: str | None = None,
    gpus: int = 0, mpiprocs_per_machine: int = 1, prepend_text: str = '', executables: dict[str, str] | None = None,
    detect_executables: bool = True, safe_interval: float = 1.0,
) -> tuple[Computer, list[str]]:
    """Create (or complete) a SLURM computer reached through SSH host ``host`` and its codes; return the computer
    and a list of what was done.

    ``host`` is a host name or an alias of ``~/.ssh/config`` (``core.ssh_async`` takes user, port and key from there).
    ``executables`` maps code labels of :data:`REMOTE_EXECUTABLES` to remote paths; with ``detect_executables`` the
    others are looked up with ``command -v`` on the remote.
    """
    from aiida.common.exceptions import NotExistent
    from aiida.orm import Computer, InstalledCode, User, load_code

    done: list[str] = []
    try:
        computer = Computer.collection.get(label=label)
        done.append(f'computer {label} exists')
    except NotExistent:
        computer = Computer(
            label=label, hostname=host, description=f'SLURM cluster over SSH ({host}), set up by aiida-qrnn',
            transport_type='core.ssh_async', scheduler_type='core.slurm', workdir=workdir,
        ).store()
        computer.set_default_mpiprocs_per_machine(mpiprocs_per_machine)
        computer.set_prepend_text(prepend_text)
        done.append(f'computer {label} created')
    if computer.scheduler_type != 'core.slurm' or computer.transport_type != 'core.ssh_async':
        raise ValueError(f'computer {label!r} exists with {computer.transport_type} + {computer.scheduler_type}, '
                         'not core.ssh_async + core.slurm; choose another label.')
    if not computer.is_user_configured(User.collection.get_default()):
        computer.configure(host=host, safe_interval=safe_interval, backend='asyncssh', use_sftp=True)
        done.append(f'computer {label} configured for SSH host {host}')

    stored = {'queue_name': partition, 'account': account, 'custom_scheduler_commands': gpu_scheduler_commands(gpus)}
    computer.set_property(SCHEDULER_OPTIONS_PROPERTY, {key: value for key, value in stored.items() if value})

    executables = dict(executables or {})
    unknown = sorted(set(executables) - set(REMOTE_EXECUTABLES))
    if unknown:
        raise ValueError(f'unknown code labels {unknown}; known: {sorted(REMOTE_EXECUTABLES)}.')
    if detect_executables:
        missing = [name for name in REMOTE_EXECUTABLES if name not in executables]
        executables.update(_detect_remote_executables(computer, missing))
        for name in missing:
            if name not in executables:
                done.append(f'code {name}@{label} skipped: {REMOTE_EXECUTABLES[name][0]!r} is not on the remote PATH '
                            f'(pass --code {name}=PATH)')
    for code_label, path in executables.items():
        full_label = f'{code_label}@{label}'
        try:
            load_code(full_label)
            done.append(f'code {full_label} exists')
            continue
        except NotExistent:
            pass
        InstalledCode(
            label=code_label, computer=computer, filepath_executable=path,
            default_calc_job_plugin=REMOTE_EXECUTABLES[code_label][1],
            description=f'{path} on {label}, set up by aiida-qrnn',
        ).store()
        done.append(f'code {full_label} created ({path})')
    return computer, done


def _detect_remote_executables(computer: Computer, names: list[str]) -> dict[str, str]:
    """Paths of the executables of ``names`` on the remote, through one SSH command; missing ones are left out."""
    if not names:
        return {}
    command = ' ; '.join(
        f'printf "%s=%s\\n" {shlex.quote(name)} "$(command -v {shlex.quote(REMOTE_EXECUTABLES[name][0])})"'
        for name in names
    )
    transport = computer.get_transport()

    async def run_remotely():
        # Directly on an event loop of our own: the blocking transport API wants AiiDA's global runner, which on a
        # ZeroMQ profile needs a running daemon broker even for a one-off command.
        async with transport:
            return await transport.exec_command_wait_async(command)

    status, stdout, stderr = asyncio.run(run_remotely())
    if status != 0:
        raise RuntimeError(f'looking up executables on {computer.label} failed ({status}): {stderr.strip()}')
    found = {}
    for line in stdout.splitlines():
        name, _, path = line.partition('=')
        if name in names and path.strip():
            found[name] = path.strip()
    return found
