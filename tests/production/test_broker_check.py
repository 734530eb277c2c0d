"""`aiida-qrnn setup --production` reads RabbitMQ's consumer_timeout from the running broker and says the fix."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from aiida_qrnn.profiles import CONSUMER_TIMEOUT_FIX, check_consumer_timeout


def test_consumer_timeout_of_the_running_broker():
    rabbitmqctl = shutil.which('rabbitmqctl') or shutil.which('rabbitmqctl', path='/usr/sbin')
    if rabbitmqctl is None:
        pytest.skip('rabbitmqctl is not installed here')
    answer = subprocess.run([rabbitmqctl, 'eval', 'application:get_env(rabbit, consumer_timeout).'],
                            capture_output=True, text=True, timeout=60)
    if answer.returncode != 0:
        pytest.skip(f'rabbitmqctl cannot reach the broker: {answer.stderr.strip()[:200]}')
    match = re.fullmatch(r'\{ok,(\d+)\}', answer.stdout.strip())
    warning = check_consumer_timeout()
    if match is None:  # undefined: long processes are safe, nothing to say
        assert warning is None
    else:
        assert f'consumer_timeout of {int(match.group(1)) / 60000:g} min' in warning
        assert CONSUMER_TIMEOUT_FIX == '[{rabbit,[{consumer_timeout,undefined}]}].' and CONSUMER_TIMEOUT_FIX in warning


def test_no_rabbitmqctl_no_warning():
    assert check_consumer_timeout('no-such-rabbitmqctl') is None
