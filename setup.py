"""Build of the one native module; everything else is in pyproject.toml.

schemas._fastrow (the sink's decoder: a result message into a validated row) is optional:
without a C compiler fleetrun installs and runs on the pure-Python path (the sink then logs that
it uses more CPU per row). The test suite requires it.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "schemas._fastrow",
            ["schemas/_fastrow.c"],
            optional=True,
            extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
