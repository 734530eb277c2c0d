"""aiida-qrnn: provenance-tracked charge-equilibrating neural-network potentials for polymers."""

__version__ = '0.1.0'
