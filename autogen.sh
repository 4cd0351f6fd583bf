#!/bin/sh
# Generate the configure script and Makefile.in from the autotools sources.
set -e
cd "$(dirname "$0")"
mkdir -p build-aux m4
autoreconf --force --install --verbose
# Autoconf's tests clean up a core dump named "core" after each check; here
# core/ is the source folder, and every check printed "rm: cannot remove
# 'core': Is a directory".  Those clean-ups drop the bare name (core files
# named core.* and *.core are still removed).
sed -i -e 's/rm -f core conftest/rm -f conftest/' -e 's/rm -f core \*\.core/rm -f *.core/' configure
