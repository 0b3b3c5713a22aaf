"""Builds orderflow; compiles the hot path's pure modules to C with mypyc (streams/compiled.py says
which and why). With no C compiler, or ORDERFLOW_PURE=1, it installs as pure Python."""

import os
import runpy
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
#: The commands that build; pip also runs this file for the metadata, which needs no compiling.
BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def compiled_modules() -> list[Extension]:
    if not BUILDS & set(sys.argv[1:]):
        return []
    build = runpy.run_path(str(ROOT / "streams" / "compiled.py"))
    pure = os.environ.get(build["PURE_ENV"], "") not in ("", "0")
    if pure or shutil.which(os.environ.get("CC", "cc")) is None:
        why = f"{build['PURE_ENV']} is set" if pure else "no C compiler found"
        print(f"orderflow: {why}: installing as pure Python", file=sys.stderr)
        build["forget_build"]()
        return []
    from mypyc.build import mypycify

    paths = [str(build["source"](module).relative_to(ROOT)) for module in build["MODULES"]]
    extensions: list[Extension] = mypycify(paths, opt_level="3")
    build["write_manifest"]()
    return extensions


setup(ext_modules=compiled_modules())
