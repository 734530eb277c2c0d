"""AiiDA data layer of aiida-qrnn."""
