"""Packaging glue that pyproject.toml cannot express: targets/ and calibration/ sit at the
repository top (the design's layout) but ship inside the wheel as edgedistill.profiles.*."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["edgedistill", "edgedistill.*"])
    + ["edgedistill.profiles.targets", "edgedistill.profiles.calibration"],
    package_dir={
        "edgedistill.profiles.targets": "targets",
        "edgedistill.profiles.calibration": "calibration",
    },
)
