"""The optional C extension (gateway/native/_rows.c and _pages.c); the rest is in pyproject.toml.

`optional=True`: where no compiler is found the install still succeeds, without the extension,
and the gateway runs the pure-Python loops (gateway/native/__init__.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gateway.native._rows",
                             ["gateway/native/_rows.c", "gateway/native/_pages.c"],
                             depends=["gateway/native/_json.h"],
                             optional=True, extra_compile_args=["-O2"])])
