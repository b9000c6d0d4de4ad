#!/usr/bin/env bash
# The headless browser of the web UI tests (tests/serving/test_ui_browser.py):
# Debian's chromium and chromium-driver. Installed with apt-get when missing
# (root, or sudo without a password); anything else fails with the command
# to run. Prints the two paths (browser, driver) on stdout when ready.
# Called by scripts/test.sh before pytest; safe to run again (a no-op when present).
set -euo pipefail
log() { echo "[browser.sh] $*" >&2; }

find_pair() {
  browser=$(command -v chromium || true)
  driver=$(command -v chromedriver || true)
  [[ -n $browser && -n $driver ]]
}

if ! find_pair; then
  if [[ $(id -u) == 0 ]]; then
    sudo=()
  elif sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    log "chromium and chromium-driver are missing and this user cannot install them;"
    log "run: sudo apt-get install chromium chromium-driver"
    exit 1
  fi
  log "installing chromium and chromium-driver (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run on the machine holds the lock for a while: wait for it.
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 -qq update >&2 || true
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 -qq install -y --no-install-recommends \
    chromium chromium-driver >&2
  if ! find_pair; then
    log "apt-get ran but chromium or chromedriver is still not on PATH"
    exit 1
  fi
fi
echo "$browser"
echo "$driver"
