"""The test plugin of tests/e2e/plugins/lanes.c (test-sleep, test-respvar),
built with the SDK header alone into a plugin folder that also links the
build tree's own plugin families, so that the shipped policies (send-request,
cache-lookup-value, ...) load beside it."""

import os
import subprocess

from conftest import BIN

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
SOURCE = os.path.join(HERE, "plugins", "lanes.c")
BUILD_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(BIN)), "plugins")


def lanes_plugin_dir(workdir):
    """A pluginDir holding lanes.so and links to the build tree's families; returns its path."""
    d = os.path.join(workdir, "plugins")
    if os.path.exists(os.path.join(d, "lanes.so")):
        return d
    os.makedirs(d, exist_ok=True)
    cmd = [os.environ.get("CC", "cc"), "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror",
           "-I" + os.path.join(TOP, "core", "include"), "-o", os.path.join(d, "lanes.so"), SOURCE]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stderr
    if os.path.isdir(BUILD_PLUGINS):
        for fam in sorted(os.listdir(BUILD_PLUGINS)):
            src = os.path.join(BUILD_PLUGINS, fam)
            if os.path.isdir(src) and fam != "lib":
                os.symlink(src, os.path.join(d, fam))
    return d
