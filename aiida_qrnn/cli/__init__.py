"""AiiDA cli layer of aiida-qrnn."""
