#!/usr/bin/env bash
# A CPython that neither pyenv nor this Debian release has (3.14 on Debian 12), taken from Debian
# unstable's binary packages: downloaded with apt into a private folder (the system's apt sources and
# packages are left as they are), unpacked without installing, and pointed at unstable's own loader
# and C library with patchelf (its binaries need a newer glibc than the system's). Prints the path
# of the interpreter; exits non-zero where it cannot be had (no network to Debian, no patchelf).
#
#   scripts/debian_python.sh 3.14 [DEST]      DEST defaults to ~/.cache/diagnose/debian-python3.14
#
# The interpreter is complete for this project (ssl, sqlite3, ctypes, lzma, bz2, zlib, venv without
# pip, the headers the C accelerators compile against); pip comes from PyPI as usual.
set -euo pipefail
version=${1:?usage: debian_python.sh X.Y [DEST]}
dest=${2:-${XDG_CACHE_HOME:-$HOME/.cache}/diagnose/debian-python$version}
python="$dest/root/usr/bin/python$version"
if [ -x "$python" ] && "$python" -c "import ssl, sqlite3, ctypes, venv" >/dev/null 2>&1; then
    echo "$python"
    exit 0
fi
command -v patchelf >/dev/null || { echo "debian_python.sh: patchelf is needed (apt-get install patchelf)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
echo "deb http://deb.debian.org/debian sid main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives"
          -o APT::Sandbox::User=root -qq)
apt-get "${apt_opts[@]}" update >&2
packages=(python$version-minimal libpython$version-minimal libpython$version-stdlib python$version
          libpython$version-dev python$version-dev python$version-venv
          libc6 libexpat1 zlib1g libffi8 libssl3t64 libbz2-1.0 liblzma5 libzstd1 libsqlite3-0 libmpdec4 libuuid1
          libncursesw6 libtinfo6 libreadline8t64)
(cd "$work/archives" && apt-get "${apt_opts[@]}" download "${packages[@]}" >&2)
rm -rf "$dest"
mkdir -p "$dest/root"
for deb in "$work/archives"/*.deb; do
    dpkg-deb -x "$deb" "$dest/root"
done
root=$(cd "$dest/root" && pwd)
libs="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
loader=
for candidate in "$root"/usr/lib64/ld-linux-x86-64.so.2 "$root"/lib64/ld-linux-x86-64.so.2; do
    if [ -z "$loader" ] && [ -e "$candidate" ]; then loader=$candidate; fi
done
[ -n "$loader" ] || { echo "debian_python.sh: no loader in the unpacked libc6" >&2; exit 1; }
patchelf --set-interpreter "$loader" --set-rpath "$libs" "$python"
for module in "$root/usr/lib/python$version/lib-dynload"/*.so; do
    patchelf --set-rpath "$libs" "$module"
done
# Debian's pyconfig.h includes the multiarch one by a system path; here it is under the unpacked root
multiarch="$root/usr/include/x86_64-linux-gnu/python$version/pyconfig.h"
if [ -e "$multiarch" ]; then cp "$multiarch" "$root/usr/include/python$version/pyconfig.h"; fi
"$python" -c "import ssl, sqlite3, ctypes, venv, sys; assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))" >&2
echo "$python"
