"""qcflow's tooling: everything that is *not* in the Function Compute layer.

- ``sandbox/`` — the local CCC + SCA emulator (``qcflow sandbox serve``; extra ``[sandbox]``);
- ``report/`` — ``qcflow report`` and ``qcflow ddl`` (DuckDB, Plotly; extra ``[report]``);
- ``cli.py``, ``cli_ops.py`` — the ``qcflow`` command (click, rich; extra ``[cli]``);
- ``demo.py`` — ``qcflow demo``, the whole pipeline on loopback through the real handlers;
- ``fc_local.py`` — FC's handler contract emulated (events, context, an HTTP trigger);
- ``status.py`` — ``qcflow status``, read from the store alone.

This folder is the one declaration of what is not runtime: the layer builder
(``scripts/build_layer.py``) refuses a layer whose handlers reach into it, and
``tests/test_runtime_imports.py`` fails when runtime code imports from it. Tooling may import
the runtime (the demo runs the real handlers); the runtime never imports tooling.
"""
