#!/usr/bin/env bash
# Usage: ensure_apt.sh COMMAND PACKAGE...
# Installs the Debian PACKAGEs when COMMAND is not on the PATH (as root, or through sudo), so that
# a fresh machine can build and check the docs.
set -euo pipefail
command_name=$1
shift
if command -v "$command_name" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    run_as_root=()
elif command -v sudo >/dev/null 2>&1; then
    run_as_root=(sudo)
else
    echo "error: '$command_name' is missing; install the Debian package(s) $* as root." >&2
    exit 1
fi
echo "'$command_name' is missing; installing Debian package(s): $*"
export DEBIAN_FRONTEND=noninteractive
# Other processes may hold the dpkg lock for a while (another install): wait for it.
"${run_as_root[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
"${run_as_root[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@"
