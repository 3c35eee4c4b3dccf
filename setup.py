"""Which repository folders install as which packages (the rest of the build is in pyproject.toml).

The repository keeps its layers in top-level folders (``rasteret_core/``, ``tasks/``,
``flows/``, ``infra/``); installed, the generic ones take project names so they
cannot collide with anyone's ``tasks`` or ``flows``: ``flows/`` is
``rasteret_flows``, ``tasks/`` is ``rasteret_tasks``. ``rasteret_core`` and
``rasteret_demo`` keep their names. ``infra/`` (local services, deployment
manifests) is development tooling used from the repository and is not installed.
"""

from setuptools import find_packages, setup

RENAMED = {"flows": "rasteret_flows", "tasks": "rasteret_tasks"}
"""Folder -> installed package name."""


def _packages() -> list[str]:
    packages = find_packages(include=["rasteret_core", "rasteret_core.*", "rasteret_demo", "rasteret_demo.*"])
    for folder, name in RENAMED.items():
        packages += [name + found[len(folder):] for found in find_packages(include=[folder, f"{folder}.*"])]
    return sorted(packages)


setup(packages=_packages(), package_dir={name: folder for folder, name in RENAMED.items()})
