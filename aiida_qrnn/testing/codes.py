"""The executables the tests register as AiiDA codes on localhost: the package's own job command, installed beside
the running Python, and the quantum-chemistry programs found on ``PATH``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

#: The virtual environment's ``bin`` folder: ``aiida-qrnn``, ``aiida-qrnn-exec`` and ``verdi`` of this checkout.
BIN = Path(sys.executable).parent
#: ``aiida-qrnn-exec`` of this checkout (never one of another venv on ``PATH``).
EXEC = str(BIN / 'aiida-qrnn-exec')
#: Installed by scripts/install.sh; a missing executable is a failure of the set-up, not a reason to skip.
XTB = shutil.which('xtb') or 'xtb'
PSI4 = shutil.which('psi4') or 'psi4'
