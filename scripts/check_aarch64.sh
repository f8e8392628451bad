#!/usr/bin/env bash
# Does the edge app give the same answers on a Raspberry Pi's CPU (aarch64) as on x86-64?
#
# Builds a Debian bookworm arm64 root (Python 3.11, as Raspberry Pi OS 64-bit) with
# debootstrap, runs it under qemu-user-static (binfmt_misc; PRoot as a fallback where
# binfmt_misc cannot be registered), installs this project with `.[edge]` from the same
# package index the host's pip uses, and runs `toolkit classify --headless` on a sample
# video with an int8 model there (emulating a Pi 4 Cortex-A72 and a Pi 5 Cortex-A76) and
# on this machine. Every frame must get the same top-k classes; LiteRT's reference
# kernels must give bit-identical scores. The result, with the EMULATED aarch64 timing
# (not a Pi figure), goes to benchmarks/results/aarch64.{json,md}.
#
# Usage (as root; debootstrap, chroot and mount need it):
#   scripts/check_aarch64.sh --model runs/pipeline/convert/model_int8.tflite [--video sample.mkv]
#                            [--threads 1] [--out benchmarks/results] [--rootfs /var/tmp/toolkit-aarch64/rootfs]
#
# The root file system (about 600 MB) stays outside the repository and is reused by
# later runs; delete it to start from scratch. Environment: DEBIAN_MIRROR, SUITE, HOST_PYTHON,
# AARCH64_EMULATION=auto|chroot|proot (auto: binfmt_misc + chroot where it works, else PRoot).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROOTFS="/var/tmp/toolkit-aarch64/rootfs"
SUITE="${SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
MODEL=""
VIDEO=""
THREADS=1
OUT_DIR="$REPO_ROOT/benchmarks/results"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
fail() { echo "error: $*" >&2; exit 1; }
log() { echo "[check_aarch64] $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --video) VIDEO="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --out) OUT_DIR="$2"; shift 2 ;;
        --rootfs) ROOTFS="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) fail "unknown argument $1 (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || fail "run as root: debootstrap, chroot and mount need it"
[ -n "$MODEL" ] || fail "--model path/to/model_int8.tflite is required"
[ -f "$MODEL" ] || fail "model $MODEL does not exist"
MODEL="$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")"
CARD="${MODEL%.tflite}.card.json"
[ -f "$CARD" ] || fail "no model card $CARD beside $MODEL"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="$(mktemp -d /tmp/check-aarch64.XXXXXX)"
HOST_PYTHON="${HOST_PYTHON:-python3}"

# --------------------------------------------------------------------------- tools
need_packages=()
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || need_packages+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_packages+=(binfmt-support)
if [ ${#need_packages[@]} -gt 0 ]; then
    log "installing ${need_packages[*]} from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# --------------------------------------------------------------------------- emulation
# binfmt_misc lets the kernel run every arm64 binary through qemu, including the ones
# pip and Python start themselves. The "F" flag (Debian's default) opens qemu at
# registration time, so it works inside the chroot without copying qemu into it.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true

# --------------------------------------------------------------------------- root file system
MOUNTS=()
cleanup() {
    local index
    for (( index=${#MOUNTS[@]}-1; index>=0; index-- )); do
        umount -l "${MOUNTS[$index]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

if [ ! -e "$ROOTFS/.toolkit-rootfs-ready" ] && [ ! -e "$ROOTFS/debootstrap" ] && [ ! -e "$ROOTFS/etc/os-release" ]; then
    log "debootstrap $SUITE arm64 into $ROOTFS (slow: every package is unpacked and configured under emulation)"
    mkdir -p "$ROOTFS"
    debootstrap --arch=arm64 --variant=minbase --foreign \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -5 "$WORK/debootstrap.log" >&2; fail "debootstrap (first stage) failed, log: $WORK/debootstrap.log"; }
fi
# Also copy qemu in, for kernels whose binfmt entry lacks the F flag.
install -m 0755 "$(command -v qemu-aarch64-static)" "$ROOTFS/usr/bin/qemu-aarch64-static"

MODE="${AARCH64_EMULATION:-auto}"  # auto, chroot (binfmt_misc) or proot
if [ "$MODE" != proot ] && chroot "$ROOTFS" /bin/true 2>/dev/null; then
    EMULATION="binfmt_misc + qemu-aarch64-static (chroot)"
    EMULATION_MODE=chroot
    in_root() { chroot "$ROOTFS" "$@"; }
    bind() { mkdir -p "$ROOTFS$2"; mount --bind "$1" "$ROOTFS$2"; MOUNTS+=("$ROOTFS$2"); [ "${3:-}" != ro ] || mount -o remount,ro,bind "$ROOTFS$2"; }
    bind_system() {
        mountpoint -q "$ROOTFS/proc" || { mount -t proc proc "$ROOTFS/proc"; MOUNTS+=("$ROOTFS/proc"); }
        mountpoint -q "$ROOTFS/dev" || bind /dev /dev
    }
elif [ "$MODE" = chroot ]; then
    fail "binfmt_misc cannot run arm64 binaries here (AARCH64_EMULATION=chroot)"
else
    [ "$MODE" = proot ] || log "binfmt_misc cannot run arm64 binaries here; falling back to PRoot with qemu-aarch64-static"
    command -v proot >/dev/null || { apt-get install -y -qq proot >/dev/null || fail "cannot install proot"; }
    PROOT_BINDS=(-b /proc -b /dev -b /sys)
    EMULATION="PRoot + qemu-aarch64-static (no binfmt_misc)"
    EMULATION_MODE=proot
    in_root() { proot -0 -q qemu-aarch64-static -r "$ROOTFS" -w / "${PROOT_BINDS[@]}" "$@"; }
    bind() { PROOT_BINDS+=(-b "$1:$2"); }
    bind_system() { :; }
fi
in_root /bin/true || fail "cannot run arm64 programs in $ROOTFS ($EMULATION)"

if [ ! -e "$ROOTFS/.toolkit-rootfs-ready" ]; then
    if [ -x "$ROOTFS/debootstrap/debootstrap" ]; then
        log "debootstrap second stage (under emulation)"
        in_root /debootstrap/debootstrap --second-stage >"$WORK/debootstrap2.log" 2>&1 \
            || { tail -5 "$WORK/debootstrap2.log" >&2; fail "debootstrap --second-stage failed, log: $WORK/debootstrap2.log"; }
    fi
    touch "$ROOTFS/.toolkit-rootfs-ready"
fi
bind_system
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

# --------------------------------------------------------------------------- the host's package index
# pip inside the root must see the same index as the host's pip: the same index URLs,
# file:// indexes bind-mounted read-only at the same paths, and the host's CA bundle.
pip_setting() {  # $1: environment variable, $2: pip config key
    local value="${!1:-}"
    [ -n "$value" ] || value="$("$HOST_PYTHON" -m pip config get "$2" 2>/dev/null || true)"
    echo "$value"
}
INDEX_URL="$(pip_setting PIP_INDEX_URL global.index-url)"
EXTRA_INDEX_URLS="$(pip_setting PIP_EXTRA_INDEX_URL global.extra-index-url | tr '\n' ' ')"
FIND_LINKS="$(pip_setting PIP_FIND_LINKS global.find-links | tr '\n' ' ')"
CERT="$(pip_setting PIP_CERT global.cert)"
for location in $INDEX_URL $EXTRA_INDEX_URLS $FIND_LINKS; do
    directory="${location#file://}"
    case "$location" in file://*|/*) ;; *) continue ;; esac
    directory="${directory%/simple}"
    [ -d "$directory" ] && bind "$directory" "$directory" ro
done
ROOT_ENV=(HOME=/root PATH=/opt/toolkit-venv/bin:/usr/bin:/bin LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
[ -z "$INDEX_URL" ] || ROOT_ENV+=("PIP_INDEX_URL=$INDEX_URL")
[ -z "${EXTRA_INDEX_URLS// /}" ] || ROOT_ENV+=("PIP_EXTRA_INDEX_URL=${EXTRA_INDEX_URLS% }")
[ -z "${FIND_LINKS// /}" ] || ROOT_ENV+=("PIP_FIND_LINKS=${FIND_LINKS% }")
if [ -n "$CERT" ] && [ -f "$CERT" ]; then
    cp "$CERT" "$ROOTFS/etc/ssl/certs/host-pip-ca.crt"
    ROOT_ENV+=(PIP_CERT=/etc/ssl/certs/host-pip-ca.crt)
fi
run_in_root() { in_root /usr/bin/env -i "${ROOT_ENV[@]}" "$@"; }

# --------------------------------------------------------------------------- install the project with .[edge]
log "copying the working tree into $ROOTFS/opt/toolkit-src"
rm -rf "$ROOTFS/opt/toolkit-src" "$ROOTFS/opt/toolkit-check"
mkdir -p "$ROOTFS/opt/toolkit-src" "$ROOTFS/opt/toolkit-check"
(cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$ROOTFS/opt/toolkit-src"
# The same numpy, OpenCV and LiteRT versions as the x86-64 run, so only the CPU differs.
"$HOST_PYTHON" - >"$ROOTFS/opt/toolkit-check/constraints.txt" <<'EOF'
from importlib import metadata
for name in ("numpy", "opencv-python-headless", "ai-edge-litert"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
EOF
log "pip install '.[edge]' inside the arm64 root (emulated; a few minutes)"
[ -x "$ROOTFS/opt/toolkit-venv/bin/python" ] || run_in_root python3 -m venv /opt/toolkit-venv
run_in_root /opt/toolkit-venv/bin/pip install -q --upgrade -c /opt/toolkit-check/constraints.txt \
    "/opt/toolkit-src[edge]" >"$WORK/pip.log" 2>&1 \
    || { tail -5 "$WORK/pip.log" >&2; fail "pip install .[edge] failed in the arm64 root, log: $WORK/pip.log"; }
run_in_root /opt/toolkit-venv/bin/pip freeze >"$WORK/aarch64-freeze.txt"
if run_in_root /opt/toolkit-venv/bin/python -c "import tensorflow" 2>/dev/null; then
    fail "tensorflow is importable in the arm64 root; the check must run with the edge dependencies only"
fi


# --------------------------------------------------------------------------- Raspberry Pi CPU profiles
# qemu's CPU model plus the /proc/cpuinfo and /sys CPU lists the board shows. Without
# them LiteRT's cpuinfo cannot identify the (emulated) CPU, XNNPACK does not start and
# the run silently uses other kernels than a Pi would; with them XNNPACK picks the
# kernels for that core (Cortex-A72: NEON; Cortex-A76: NEON + dot product).
write_profile() {  # name qemu-cpu part variant revision model features...
    local directory="$WORK/profiles/$1" core
    mkdir -p "$directory/cpu"
    echo "$2" >"$directory/qemu_cpu"
    for core in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
            "$core" "${*:7}" "$4" "$3" "$5"
    done >"$directory/cpuinfo"
    printf 'Model\t\t: %s\n' "$6" >>"$directory/cpuinfo"
    for list in possible present online; do echo 0-3 >"$directory/cpu/$list"; done
}
write_profile pi4 cortex-a72 0xd08 0x0 3 "Raspberry Pi 4 Model B (emulated)" fp asimd evtstrm crc32 cpuid
write_profile pi5 cortex-a76 0xd0b 0x4 1 "Raspberry Pi 5 Model B (emulated)" \
    fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
PROFILES=(pi4 pi5)

run_as_pi() {  # profile command...
    local directory="$WORK/profiles/$1" status=0
    shift
    if [ "$EMULATION_MODE" = chroot ]; then
        mount --bind "$directory/cpuinfo" "$ROOTFS/proc/cpuinfo"; MOUNTS+=("$ROOTFS/proc/cpuinfo")
        mount -t tmpfs tmpfs "$ROOTFS/sys"; MOUNTS+=("$ROOTFS/sys")
        mkdir -p "$ROOTFS/sys/devices/system/cpu" && cp "$directory"/cpu/* "$ROOTFS/sys/devices/system/cpu/"
        in_root /usr/bin/env -i "${ROOT_ENV[@]}" "QEMU_CPU=$(cat "$directory/qemu_cpu")" "$@" || status=$?
        umount "$ROOTFS/sys"; umount "$ROOTFS/proc/cpuinfo"
    else
        PROOT_BINDS+=(-b "$directory/cpuinfo:/proc/cpuinfo" -b "$directory/cpu:/sys/devices/system/cpu")
        in_root /usr/bin/env -i "${ROOT_ENV[@]}" "QEMU_CPU=$(cat "$directory/qemu_cpu")" "$@" || status=$?
        PROOT_BINDS=("${PROOT_BINDS[@]:0:${#PROOT_BINDS[@]}-4}")
    fi
    return $status
}

# --------------------------------------------------------------------------- the sample video
# Lossless (FFV1), so both architectures classify the very same pixels: lossy decoders
# (mp4v, MJPEG) are not bit-exact across CPUs, which would test FFmpeg, not the app.
if [ -z "$VIDEO" ]; then
    VIDEO="$WORK/sample.mkv"
    log "writing $VIDEO from tests/data/cifar10-sample (300 frames of 160x120, FFV1 lossless)"
    "$HOST_PYTHON" - "$REPO_ROOT/tests/data/cifar10-sample" "$VIDEO" <<'EOF'
import sys
from pathlib import Path
import cv2, numpy as np
source, target = Path(sys.argv[1]), sys.argv[2]
writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (160, 120))
for path in sorted(source.glob("*/*.jpg")):
    frame = np.full((120, 160, 3), 127, np.uint8)   # a 4:3 camera frame, the picture in its centre square
    frame[:, 20:140] = cv2.resize(cv2.imread(str(path)), (120, 120), interpolation=cv2.INTER_LINEAR)
    writer.write(frame)
writer.release()
EOF
fi
[ -f "$VIDEO" ] || fail "video $VIDEO does not exist"
VIDEO_IN_ROOT="/opt/toolkit-check/$(basename "$VIDEO")"
cp "$MODEL" "$ROOTFS/opt/toolkit-check/model.tflite"
cp "$CARD" "$ROOTFS/opt/toolkit-check/model.card.json"
cp "$VIDEO" "$ROOTFS$VIDEO_IN_ROOT"
cp "$REPO_ROOT/scripts/reference_predictions.py" "$ROOTFS/opt/toolkit-check/"

# --------------------------------------------------------------------------- the runs
seconds_since() { "$HOST_PYTHON" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 2))" "$1"; }

log "x86-64: toolkit classify --headless"
start=$(date +%s.%N)
(cd "$REPO_ROOT" && "$HOST_PYTHON" -m toolkit classify --model "$MODEL" --source "$VIDEO" --headless \
    --threads "$THREADS" >"$WORK/x86_64.jsonl" 2>"$WORK/x86_64.stderr") \
    || { tail -3 "$WORK/x86_64.stderr" >&2; fail "the x86-64 run failed"; }
echo "{\"x86_64\": $(seconds_since "$start")" >"$WORK/wall.json"
(cd "$REPO_ROOT" && "$HOST_PYTHON" scripts/reference_predictions.py "$MODEL" "$VIDEO" \
    >"$WORK/x86_64.reference.jsonl" 2>"$WORK/x86_64.reference.stderr") \
    || fail "the x86-64 reference-kernel run failed"

for profile in "${PROFILES[@]}"; do
    log "aarch64 as $profile (EMULATED): toolkit classify --headless"
    start=$(date +%s.%N)
    run_as_pi "$profile" /opt/toolkit-venv/bin/toolkit classify --model /opt/toolkit-check/model.tflite \
        --source "$VIDEO_IN_ROOT" --headless --threads "$THREADS" \
        >"$WORK/aarch64-$profile.jsonl" 2>"$WORK/aarch64-$profile.stderr" \
        || { tail -3 "$WORK/aarch64-$profile.stderr" >&2; fail "the aarch64 ($profile) run failed"; }
    echo ", \"aarch64-$profile\": $(seconds_since "$start")" >>"$WORK/wall.json"
    grep -q "XNNPACK" "$WORK/aarch64-$profile.stderr" \
        || log "warning: XNNPACK did not start in the $profile run (see $WORK/aarch64-$profile.stderr)"
done
echo "}" >>"$WORK/wall.json"
log "aarch64 as pi4 (EMULATED): reference kernels"
run_as_pi pi4 /opt/toolkit-venv/bin/python /opt/toolkit-check/reference_predictions.py \
    /opt/toolkit-check/model.tflite "$VIDEO_IN_ROOT" >"$WORK/aarch64.reference.jsonl" 2>"$WORK/aarch64.reference.stderr" \
    || { tail -3 "$WORK/aarch64.reference.stderr" >&2; fail "the aarch64 reference-kernel run failed"; }

# --------------------------------------------------------------------------- compare and record
cat >"$WORK/context.json" <<EOF
{
  "emulation": "$EMULATION",
  "suite": "$SUITE",
  "aarch64_python": "$(run_in_root /opt/toolkit-venv/bin/python -c 'import platform; print(platform.python_version())')",
  "aarch64_machine": "$(run_in_root /usr/bin/uname -m)",
  "aarch64_os": "$(. "$ROOTFS/etc/os-release" && echo "$PRETTY_NAME")",
  "host_machine": "$(uname -m)",
  "host_processor": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')",
  "host_os": "$(. /etc/os-release && echo "$PRETTY_NAME")",
  "host_python": "$("$HOST_PYTHON" -c 'import platform; print(platform.python_version())')",
  "threads": $THREADS,
  "model": "$MODEL",
  "video": "$VIDEO",
  "profiles": {"pi4": "QEMU_CPU=cortex-a72, Raspberry Pi 4 /proc/cpuinfo", "pi5": "QEMU_CPU=cortex-a76 (dot product), Raspberry Pi 5 /proc/cpuinfo"},
  "wall_seconds": $(cat "$WORK/wall.json"),
  "git_commit": "$(cd "$REPO_ROOT" && git rev-parse HEAD)",
  "git_dirty": $(cd "$REPO_ROOT" && [ -z "$(git status --porcelain --untracked-files=no)" ] && echo false || echo true)
}
EOF
"$HOST_PYTHON" "$REPO_ROOT/scripts/aarch64_record.py" --work "$WORK" --out "$OUT_DIR" && status=0 || status=$?
log "work files in $WORK"
exit $status
