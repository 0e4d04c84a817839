#!/usr/bin/env bash
# Assembles the git-ignored .carry/ folder that goes with a copy of the tree to a GPU machine with
# no network (scripts/gpu_session.sh, bench/run_gpu.sh, bench/serve_gpu.sh read it), on a Debian 12
# host with the build dependencies (scripts/install-deps.sh) and a configured build directory:
#
#   .carry/debs/                 PCRE2 .debs (the GPU image lacks libpcre2-dev)
#   .carry/boost-headers.tar.xz  the Boost headers voxrt serve includes (Beast, Asio and what they
#                                pull in, as the compiler lists them for tools/server/*.cpp, plus
#                                the whole asio/beast/config/system/predef folders) and Boost's
#                                CMake package files, from Debian's libboost1.81-dev
#   .carry/pyserve/              the websockets wheel for CPython 3.12 (bench/serve_bench.py)
#   .carry/audio/                question.wav and asr.wav, when AUDIO_DIR names a folder with them
#
#   bench/make_carry.sh [BUILD_DIR]        (default build; AUDIO_DIR=/path/to/recordings)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
CARRY=.carry
[[ -f $BUILD/compile_commands.json ]] || {
  echo "make_carry: $BUILD/compile_commands.json not found (configure the build first)" >&2
  exit 1
}
mkdir -p "$CARRY/debs" "$CARRY/pyserve"

(cd "$CARRY/debs" && apt-get download -q libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 \
  libpcre2-posix3 >/dev/null)

list=$(mktemp)
trap 'rm -f "$list"' EXIT
python3 - "$BUILD/compile_commands.json" > "$list" <<'EOF'
import json, shlex, subprocess, sys
headers = set()
for e in json.load(open(sys.argv[1])):
    if "/tools/server/" not in e["file"]:
        continue
    args, skip = [], False
    for a in shlex.split(e["command"]):
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        else:
            args.append(a)
    deps = subprocess.run(args + ["-M", "-MF", "/dev/stdout"], cwd=e["directory"],
                          capture_output=True, text=True, check=True).stdout
    headers.update(t for t in deps.replace("\\\n", " ").split() if t.startswith("/usr/include/boost/"))
if not headers:
    sys.exit("make_carry: no Boost header found in the server's dependencies")
print("\n".join(sorted(h[1:] for h in headers)))
EOF
(cd / && find usr/include/boost/config usr/include/boost/asio usr/include/boost/beast \
   usr/include/boost/system usr/include/boost/predef -type f &&
 find usr/lib/x86_64-linux-gnu/cmake/Boost-1.81.0 usr/lib/x86_64-linux-gnu/cmake/boost_headers-1.81.0 \
   -type f && echo usr/lib/x86_64-linux-gnu/cmake/BoostDetectToolset-1.81.0.cmake) >> "$list"
sort -u -o "$list" "$list"
tar -C / -cJf "$CARRY/boost-headers.tar.xz" -T "$list"

python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  -d "$CARRY/pyserve" "$(grep -E '^websockets==' tests/server/requirements.txt)"

if [[ -n "${AUDIO_DIR:-}" ]]; then
  mkdir -p "$CARRY/audio"
  cp "$AUDIO_DIR/question.wav" "$AUDIO_DIR/asr.wav" "$CARRY/audio/"
fi
echo "make_carry: $(du -sh "$CARRY" | cut -f1) in $CARRY ($(wc -l < "$list") Boost files)"
