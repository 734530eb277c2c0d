"""Pure science of aiida-qrnn: numpy, torch and ASE only. Nothing here imports ``aiida``."""
