#!/usr/bin/env bash
# Installs the Debian 12 packages voxrt builds and tests with (as root, or through sudo).
# The CUDA toolkit is optional: when nvcc is on PATH (or in /usr/local/cuda/bin) the CUDA backend
# is built too.
set -euo pipefail
talk_pkgs=(portaudio19-dev  # voxrt talk: microphone and speakers (PortAudio)
           # its device test (tests/e2e/talk_device.py): paplay/parec/pactl, ALSA's pulse plugin
           # through which PortAudio reaches the test's private PulseAudio daemon, and the daemon
           pulseaudio-utils libasound2-plugins)
if dpkg -s pipewire-pulse >/dev/null 2>&1; then
  # a desktop whose sound server is PipeWire: a second server's user units would compete with it
  echo "voxrt: pipewire-pulse is installed, so pulseaudio is not; the talk_device test needs it" >&2
else
  talk_pkgs+=(pulseaudio)
fi
pkgs=(build-essential cmake ninja-build pkg-config git
      nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libpcre2-dev
      espeak-ng clang-format
      clang libclang-rt-14-dev     # the fuzz targets (scripts/fuzz.sh): clang's libFuzzer + sanitizers
      libboost1.81-dev python3-venv   # voxrt serve: Boost.Beast/Asio; its tests' Python clients
      chromium chromium-driver)       # the browser page's test (tests/server/test_page.py)
missing=()
for p in "${pkgs[@]}" "${talk_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "voxrt: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
