"""AiiDA calculations layer of aiida-qrnn."""
