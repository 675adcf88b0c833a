#!/bin/sh
# Install Debian/Ubuntu packages for one purpose, when root or sudo and apt-get allow.
#
#   installers/debian-install.sh [--required] PURPOSE PACKAGE...
#
# With no PACKAGE, nothing to do. When they cannot be installed, one line says which to install
# and why: with --required it exits 1 (the command that needs them cannot go on), else 0 (what
# needs them is skipped).
required=0
if [ "$1" = --required ]; then required=1; shift; fi
purpose=$1; shift
[ $# -gt 0 ] || exit 0

give_up() {
    if [ $required = 1 ]; then
        echo "make: $purpose needs $*: $reason; install them, then run make again" >&2
        exit 1
    fi
    echo "make: cannot install $* ($reason): $purpose will be skipped" >&2
    exit 0
}

if [ "$(id -u)" = 0 ]; then SUDO=
elif command -v sudo >/dev/null 2>&1; then SUDO=sudo
else reason="not root, no sudo"; give_up "$@"; fi
command -v apt-get >/dev/null 2>&1 || { reason="no apt-get here: see installers/README.md"; give_up "$@"; }

echo "installing Debian packages for $purpose: $*"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    || { $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; } \
    || { reason="apt-get failed"; give_up "$@"; }
