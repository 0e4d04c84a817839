#!/usr/bin/env bash
# Runs one Python server test (tests/server/test_*.py) in a virtual environment made at test time
# under the build directory, with the pinned client packages (requirements.txt).
#   tests/server/run_py.sh BUILD_DIR test_faults.py      (VOXRT_SERVE names the server binary)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run_py.sh BUILD_DIR TEST.py}
test=${2:?usage: run_py.sh BUILD_DIR TEST.py}
venv="$build/server-venv"
req="$here/requirements.txt"
# one creator at a time (ctest -j runs the Python tests side by side)
exec 9>"$build/server-venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi
flock -u 9
cd "$here"
exec "$venv/bin/python" -u -W ignore::DeprecationWarning "$test"
