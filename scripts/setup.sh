#!/usr/bin/env bash
# Installs everything mlagent needs, idempotently: system packages (Vulkan loader, Mesa >= 24 lavapipe for
# machines without a GPU, Debian's Python with torch as the benchmark and math oracle), npm packages, and the build.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- Node ---------------------------------------------------------------------------------------------------
command -v node >/dev/null || die "Node.js >= 20.19 is required (https://nodejs.org)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || die "Node.js >= 20.19 is required, found $(node --version)"

# --- System packages ----------------------------------------------------------------------------------------
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
fi

# Debian/Ubuntu packages we need. Debian's python3-torch links the system BLAS; OpenBLAS makes it a fair
# (multi-threaded, vectorized) reference instead of the reference BLAS.
APT_PACKAGES=(libvulkan1 mesa-vulkan-drivers python3 python3-numpy python3-torch libopenblas0-pthread bubblewrap
  python3-pandas python3-sklearn python3-scipy python3-xgboost redis-server)

# Empty when Mesa is not installed (dpkg-query fails then; under pipefail that must not end the script).
mesa_version() { { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; } | sed -E 's/^[0-9]+://; s/[^0-9.].*//'; }
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
mesa_major=$(mesa_version | cut -d. -f1)
need_new_mesa=0
if [ -z "$mesa_major" ] || [ "$mesa_major" -lt 24 ]; then need_new_mesa=1; fi

if [ ${#missing[@]} -gt 0 ] || [ "$need_new_mesa" -eq 1 ]; then
  command -v apt-get >/dev/null || die "apt-get not found: install ${APT_PACKAGES[*]} (Mesa >= 24) by hand"
  [ "$SUDO" = "none" ] && die "need root (or sudo) to install: ${missing[*]} mesa>=24"
  export DEBIAN_FRONTEND=noninteractive
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  mesa_target=()
  if [ "$codename" = "bookworm" ]; then
    # Dawn refuses Debian 12's Mesa 22.3 ("Vulkan shaderUniform*ArrayDynamicIndexing required"); backports has 25.x.
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding bookworm-backports for Mesa >= 24"
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    fi
    mesa_target=(-t bookworm-backports)
  fi
  log "apt-get install ${APT_PACKAGES[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${mesa_target[@]}" mesa-vulkan-drivers libvulkan1 >/dev/null
  $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
  mesa_major=$(mesa_version | cut -d. -f1)
  if [ "${mesa_major:-0}" -lt 24 ]; then
    log "warning: Mesa $(mesa_version) is older than 24; Dawn may refuse lavapipe. A real GPU driver still works."
  fi
else
  log "system packages present (Mesa $(mesa_version))"
fi

# Dawn's Vulkan backend wants a runtime dir; headless machines often have none.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/mlagent-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

# --- npm and build ------------------------------------------------------------------------------------------
log "npm ci"
npm ci --no-audit --no-fund --loglevel=error
log "building"
NX_DAEMON=false npx nx run-many -t build --outputStyle=static >/dev/null
log "checking the GPU adapter"
node apps/cli/bin/mlagent.js doctor 2> >(grep -v 'artificially reduced' >&2)
log "done"
