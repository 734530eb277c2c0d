"""AiiDA parsers layer of aiida-qrnn."""
