"""Shared pieces of the command-line interfaces: profile loading and error translation."""

from __future__ import annotations

import functools
import typing as t

import click


def load_profile_from_context(ctx: click.Context) -> None:
    """Load the profile named by the group's ``--profile`` (or the default one), with a clear error if absent."""
    from aiida import load_profile
    from aiida.common.exceptions import MissingConfigurationError, ProfileConfigurationError

    name = (ctx.find_root().obj or {}).get('profile_name')
    try:
        load_profile(name, allow_switch=True)
    except (MissingConfigurationError, ProfileConfigurationError) as exception:
        raise click.ClickException(
            f'no AiiDA profile {name or "(default)"} could be loaded ({exception}); run `aiida-qrnn setup` first.'
        ) from None


def with_profile(command: t.Callable) -> t.Callable:
    """Load the AiiDA profile before running ``command``."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        load_profile_from_context(click.get_current_context())
        return command(*args, **kwargs)

    return wrapper


def translate_errors(command: t.Callable) -> t.Callable:
    """Turn the package's input errors (``ValueError`` subclasses) into one-line CLI errors, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from aiida_qrnn.core.dataset import ClusterSetError
        from aiida_qrnn.core.sanity import PhysicsCheckError
        from aiida_qrnn.data.model import ModelDataError
        from aiida_qrnn.profiles import SetupError

        try:
            return command(*args, **kwargs)
        except (ClusterSetError, ModelDataError, PhysicsCheckError, SetupError) as exception:
            raise click.ClickException(str(exception)) from None

    return wrapper
