"""What the tests and benchmarks share, shipped with the package so that neither imports the other.

- :mod:`.structures`: small molecules, clusters and periodic cells with known composition (no AiiDA);
- :mod:`.models`: tiny random-weight QRNNs and clusters labelled by a random teacher QRNN (no AiiDA);
- :mod:`.inputs`: small inputs for real jobs and work chains (MD, committees, active learning);
- :mod:`.files`: cluster-set files changed in place or damaged byte by byte, for the integrity tests;
- :mod:`.benchmarks`: the scripts of ``benchmarks/`` loaded as modules for their smoke tests;
- :mod:`.devices`: the CPU/CUDA × eager/compiled matrix a model test runs over;
- :mod:`.codes`: the executables the tests register as AiiDA codes;
- :mod:`.profiles`: ``aiida-qrnn``/``verdi`` in subprocesses on an embedded profile, and its daemon;
- :mod:`.slurm` and :mod:`.production`: the local SLURM cluster and a PostgreSQL + RabbitMQ production profile;
- :mod:`.fixtures`: the pytest plugin (``pytest_plugins = ['aiida_qrnn.testing.fixtures']``).

Only :mod:`.fixtures` and :mod:`.inputs` import AiiDA at import time (:func:`.models.small_qrnn_node` when called).
"""
