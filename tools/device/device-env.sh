# Sourced by the device scripts (tools/device/*.sh) from the repo root on the device machine: unpacks the Vulkan
# loader packages and node from .device/, sets the environment, sets and creates $OUT, and enters .device/pkg.
export OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
for f in .device/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done; ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
mkdir -p /tmp/nodebin && tar -C /tmp/nodebin -xJf .device/node.tar.xz
export PATH=/tmp/nodebin:$PATH XDG_RUNTIME_DIR=/tmp/xdg MLAGENT_PYTHON="$(command -v python3)"
mkdir -p "$XDG_RUNTIME_DIR"
cd .device/pkg
