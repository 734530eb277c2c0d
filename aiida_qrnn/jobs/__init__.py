"""What runs inside a job folder on a computer, without AiiDA: the ``aiida-qrnn-exec`` sub-commands.

Each job module declares its command, its input and output file names and its exit statuses once, in a
:class:`~aiida_qrnn.jobs.folder.Job`; the CalcJob that stages the job and the parser that reads it import that
declaration, never the other way round (``calculations`` and ``parsers`` depend on ``jobs``, ``jobs`` only on
``core``). :mod:`aiida_qrnn.cli.exec` only registers the commands.
"""
