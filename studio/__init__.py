"""MoEE Studio: the PySide6 desktop app (the only package that imports Qt). See studio/README.md."""
