"""Builds ringmoe._core with the project's CMake build (the target ringmoe_python) for `pip install .`.

CMake configures a build folder of its own (build/pip-<python>, or $RINGMOE_PIP_BUILD_DIR), with the tests and
benchmarks off; extra configure arguments come from $CMAKE_ARGS (for example -DRINGMOE_CUDA=OFF, or
-DCMAKE_CXX_COMPILER_LAUNCHER=ccache). Nothing is downloaded: see pyproject.toml.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent


def project_version():
    """The version of project(ringmoe VERSION x.y.z) in CMakeLists.txt: one place for the C++ and the wheel."""
    match = re.search(r"project\(ringmoe\s+VERSION\s+([0-9.]+)", (ROOT / "CMakeLists.txt").read_text())
    if match is None:
        raise RuntimeError("CMakeLists.txt: no project(ringmoe VERSION ...)")
    return match.group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, extension):
        build_dir = pathlib.Path(os.environ.get("RINGMOE_PIP_BUILD_DIR",
                                                ROOT / "build" / f"pip-{sys.implementation.cache_tag}"))
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                     "-DRINGMOE_PYTHON=ON", "-DRINGMOE_TESTS=OFF", "-DRINGMOE_BENCH=OFF",
                     f"-DPython3_EXECUTABLE={sys.executable}"]
        if subprocess.run(["ninja", "--version"], capture_output=True).returncode == 0:
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "ringmoe_python", "-j", jobs], check=True)
        built = build_dir / "python" / "ringmoe" / ("_core" + sysconfig.get_config_var("EXT_SUFFIX"))
        target = pathlib.Path(self.get_ext_fullpath(extension.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(built), str(target))


setup(
    version=project_version(),
    packages=["ringmoe"],
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("ringmoe._core")],
    cmdclass={"build_ext": CMakeBuild},
)
