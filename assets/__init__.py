"""MoEE Studio's bundled data: the default model, the recognisers and the demo inputs.

In the repository this is the top-level ``assets/`` folder; installed (wheel, ``pip install .``,
pipx, or editable) it is the importable package ``moee_assets`` (``package-dir`` in
``pyproject.toml``). Look files up through :mod:`engine.io.resources`, not relative to the source tree.
"""
