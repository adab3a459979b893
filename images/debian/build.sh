#!/usr/bin/env bash
# A Raspberry Pi (3, 4, 400, CM4) SD-card image for the register, from Debian's own arm64 packages,
# built on an ordinary Debian machine of any architecture: mmdebstrap makes the root file system
# (through qemu-user when the machine is not arm64), images/common/install-register.sh puts the app
# bundle and the register's configuration in, and genimage writes the partitions straight from
# directories, with no loop device and no mount. images/README.md.
#
#   images/debian/build.sh --bundle register-…-linux-arm64.tar.gz --out DIR [options]
#
# Partitions: 1 boot (FAT, label RASPIFIRM: firmware, kernel, initramfs, config.txt, cmdline.txt),
# 2 root (ext4, label register-root, read-only under an overlayroot tmpfs), 3 data (ext4, label
# register-data: registerd's journal and state, and journald's files).
#
# Needs (Debian packages): mmdebstrap, genimage, e2fsprogs, dosfstools, mtools, systemd
# (systemd-sysusers, systemctl), and on a machine that is not arm64: qemu-user-static, binfmt-support.
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")

usage() {
  cat >&2 <<'EOF'
usage: images/debian/build.sh --bundle FILE --out DIR [options]
  --bundle FILE      the app bundle for arm64 (npm run bundle -- --arch arm64 --out DIR)
  --out DIR          where the image and its .sha256 go
  --suite NAME       the Debian release (default bookworm)
  --mirror URL       a Debian mirror (default: mmdebstrap's)
  --work DIR         the build's scratch space, emptied first (default: a new temporary directory)
  --hostname NAME    the register's host name (default register)
  --boot-size SIZE   FAT boot partition (default 256M)
  --root-size SIZE   root partition (default 1536M)
  --data-size SIZE   data partition (default 1G)
  --dry-run          check everything, print the plan, build nothing
EOF
  exit 64
}

fail() {
  echo "build.sh: $*" >&2
  exit 1
}

bundle='' out='' suite=bookworm mirror='' work='' hostname=register
boot_size=256M root_size=1536M data_size=1G dry_run=0
while (($#)); do
  case $1 in
  --bundle | --out | --suite | --mirror | --work | --hostname | --boot-size | --root-size | --data-size)
    (($# >= 2)) || {
      echo "build.sh: $1 needs a value" >&2
      usage
    }
    case $1 in
    --bundle) bundle=$2 ;;
    --out) out=$2 ;;
    --suite) suite=$2 ;;
    --mirror) mirror=$2 ;;
    --work) work=$2 ;;
    --hostname) hostname=$2 ;;
    --boot-size) boot_size=$2 ;;
    --root-size) root_size=$2 ;;
    --data-size) data_size=$2 ;;
    esac
    shift 2
    ;;
  --dry-run)
    dry_run=1
    shift
    ;;
  -h | --help) usage ;;
  *)
    echo "build.sh: unknown argument: $1" >&2
    usage
    ;;
  esac
done

[[ -n $bundle ]] || {
  echo "build.sh: --bundle is required" >&2
  usage
}
[[ -n $out ]] || {
  echo "build.sh: --out is required" >&2
  usage
}
[[ -f $bundle ]] || fail "no bundle at $bundle"
[[ $suite =~ ^[a-z]+$ ]] || fail "--suite $suite: a Debian release name (bookworm, trixie)"
[[ $hostname =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || fail "--hostname $hostname: not a host name"
for size in "$boot_size" "$root_size" "$data_size"; do
  [[ $size =~ ^[1-9][0-9]*[MG]$ ]] || fail "size $size: a number of MiB or GiB, like 512M or 2G"
done

# The bundle must be an arm64 app bundle; its release names the image.
manifest=$(tar -xzOf "$bundle" manifest.json 2>/dev/null) || fail "$bundle has no manifest.json: not an app bundle"
release=$(sed -n 's/^  "release": "\(.*\)",$/\1/p' <<<"$manifest")
arch=$(sed -n 's/^  "arch": "\(.*\)",$/\1/p' <<<"$manifest")
[[ $arch == arm64 ]] || fail "the bundle is for ${arch:-an unknown architecture}; build it with --arch arm64"
[[ $release =~ ^[A-Za-z0-9._+-]+$ ]] || fail "the bundle's manifest has no usable release: '$release'"
if [[ -f $bundle.sha256 ]]; then
  (cd "$(dirname "$bundle")" && sha256sum --quiet -c "$(basename "$bundle").sha256") ||
    fail "$bundle does not match $bundle.sha256"
fi
image_name=register-$release-debian-$suite-arm64.img

# The packages: a booting system with systemd, Debian's Raspberry Pi firmware and arm64 kernel, an
# initramfs with busybox and overlayroot for the read-only root, the network, the clock, and libusb
# for node-hid. Nothing to log in with: the till owns tty1 and root has no password.
packages=(
  systemd systemd-sysv udev dbus systemd-timesyncd systemd-resolved
  linux-image-arm64 raspi-firmware initramfs-tools busybox overlayroot
  e2fsprogs dosfstools kmod iproute2 ca-certificates tzdata libusb-1.0-0
)
packages_csv=$(
  IFS=,
  echo "${packages[*]}"
)

missing=()
for tool in mmdebstrap genimage mke2fs mkdosfs mcopy systemd-sysusers systemctl sha256sum; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
host_arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
if [[ $host_arch != arm64 && $host_arch != aarch64 ]]; then
  binfmt=/proc/sys/fs/binfmt_misc/qemu-aarch64
  if ! { [[ -r $binfmt ]] && head -n 1 "$binfmt" | grep -qx enabled; }; then
    missing+=("qemu-aarch64 binfmt (apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64)")
  fi
fi

# shellcheck disable=SC2016,SC2054 # the hook's $1 is mmdebstrap's; commas separate packages
mmdebstrap_args=(
  --architectures=arm64
  --variant=apt
  --components=main,non-free-firmware
  --include="$packages_csv"
  --setup-hook='mkdir -p "$1/boot/firmware"'
  --customize-hook="$here/customize.sh"
  "$suite"
)

if ((dry_run)); then
  echo "bundle:    $bundle (release $release)"
  echo "image:     $out/$image_name"
  echo "partitions: boot $boot_size, root $root_size, data $data_size"
  echo "step 1:    mmdebstrap ${mmdebstrap_args[*]} WORK/rootfs ${mirror:-(default mirror)}"
  echo "step 2:    genimage --config WORK/genimage.cfg --rootpath WORK/rootfs"
  if ((${#missing[@]})); then
    printf 'missing:   %s\n' "${missing[@]}"
  else
    echo "tools:     all present"
  fi
  exit 0
fi
((${#missing[@]} == 0)) || fail "missing: ${missing[*]}"
((EUID == 0)) || fail "run as root: the root file system's owners and device nodes need it (mmdebstrap, genimage)"

# The scratch space holds mmdebstrap's bind mounts of this machine's /dev/shm, /proc and /sys while
# it runs: it is only ever removed through remove-tree.sh, which unmounts first (never rm -rf).
remove_tree=$here/../common/remove-tree.sh
if [[ -z $work ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/register-image.XXXXXX")
  trap '"$remove_tree" "$work"' EXIT
  trap 'exit 130' INT TERM
else
  "$remove_tree" "$work"
  mkdir -p "$work"
fi
mkdir -p "$out" "$work/images"

export REGISTER_BUNDLE REGISTER_HOSTNAME
REGISTER_BUNDLE=$(readlink -f "$bundle")
REGISTER_HOSTNAME=$hostname

echo "build.sh: root file system (mmdebstrap, $suite arm64)" >&2
mmdebstrap "${mmdebstrap_args[@]}" "$work/rootfs" ${mirror:+"$mirror"}

echo "build.sh: partitions (genimage)" >&2
sed -e "s/@BOOT_SIZE@/$boot_size/" -e "s/@ROOT_SIZE@/$root_size/" -e "s/@DATA_SIZE@/$data_size/" \
  -e "s/@IMAGE@/$image_name/" "$here/genimage.cfg" >"$work/genimage.cfg"
genimage --config "$work/genimage.cfg" --rootpath "$work/rootfs" --tmppath "$work/genimage-tmp" \
  --inputpath "$work/images" --outputpath "$work/images"

mv "$work/images/$image_name" "$out/$image_name"
(cd "$out" && sha256sum "$image_name" >"$image_name.sha256")
echo "build.sh: $out/$image_name" >&2
