"""Build configuration for the optional compiled accelerator, amqpd._speedups.

Everything else is in pyproject.toml. The extension is `optional`: without a C compiler (or
Python headers) the build prints a warning and installs the pure-Python package, which
selects its pure-Python codec at import (amqpd/accel.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "amqpd._speedups",
            sources=["amqpd/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
