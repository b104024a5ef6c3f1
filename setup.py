"""Packaging beyond pyproject.toml: the top-level ``devices/`` and ``pipelines/`` ship inside the package.

They stay the one copy in the repository; a wheel holds them as
``closedloop/devices`` and ``closedloop/pipelines``, and an editable install
maps those names back to the top-level folders
(:func:`closedloop.config.profile.packaged_folder` finds either).
"""

from setuptools import find_packages, setup

DATA = {"closedloop.devices": "devices", "closedloop.pipelines": "pipelines"}

setup(
    packages=[*find_packages(include=["closedloop", "closedloop.*"]), *DATA],
    package_dir=DATA,
    package_data={
        "closedloop": ["py.typed"],
        "closedloop.live.dashboard": ["static/*"],  # the dashboard's page, script and style
        **{name: ["*.toml"] for name in DATA},
    },
)
