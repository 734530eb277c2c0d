"""AiiDA workchains layer of aiida-qrnn."""
