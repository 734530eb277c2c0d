"""The model file's format tag, shared by ``ModelData`` and the calculator; torch-free so ``data/`` can import it
without loading torch."""

MODEL_FORMAT = 'aiida-qrnn-model'
MODEL_FORMAT_VERSION = 1
