#!/bin/sh
# Generate the configure script and Makefile.in from the autotools sources.
set -e
cd "$(dirname "$0")"
mkdir -p build-aux m4
autoreconf --force --install --verbose
