#!/bin/sh
# mmdebstrap's customize hook for images/debian/build.sh: runs on the build machine once every package
# is installed, with the root file system's directory as $1. Commands inside the root run through
# chroot (qemu-user on a machine that is not arm64). Takes REGISTER_BUNDLE and REGISTER_HOSTNAME
# from build.sh.
set -eu

root=$1
here=$(dirname "$(readlink -f "$0")")
: "${REGISTER_BUNDLE:?set by build.sh}" "${REGISTER_HOSTNAME:?set by build.sh}"

fail() {
  echo "customize.sh: $*" >&2
  exit 1
}

"$here/../common/install-register.sh" "$root" "$REGISTER_BUNDLE"

# The root and boot partitions by their labels (genimage.cfg names them), first in fstab. The boot
# partition is writable: provisioning removes the private key from it.
{
  echo 'LABEL=register-root / ext4 defaults,noatime 0 1'
  echo 'LABEL=RASPIFIRM /boot/firmware vfat rw,noatime,fmask=0077,dmask=0077,flush,nofail,x-systemd.device-timeout=90s 0 2'
  grep -v -e '[[:space:]]/[[:space:]]' -e '[[:space:]]/boot/firmware[[:space:]]' -e '^# UNCONFIGURED' "$root/etc/fstab" || true
} >"$root/etc/fstab.new"
mv "$root/etc/fstab.new" "$root/etc/fstab"

echo "$REGISTER_HOSTNAME" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
  "$REGISTER_HOSTNAME" >"$root/etc/hosts"

# Wired network by DHCP, names resolved by systemd-resolved, the clock from NTP.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/20-wired.network" <<'EOF'
# The register's wired network (images/debian/customize.sh): DHCP on the first Ethernet port.
[Match]
Name=eth* en*

[Network]
DHCP=yes
EOF
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
systemctl --root="$root" enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service

# Boot files: Debian's raspi-firmware writes config.txt and cmdline.txt into /boot/firmware from
# these settings at every kernel or initramfs update. The consoles leave tty1 to the till.
cat >"$root/etc/default/raspi-firmware" <<'EOF'
# The register's boot settings (images/debian/customize.sh); see raspi-firmware's own comments.
ROOTPART="LABEL=register-root"
CONSOLES="tty3"
EOF
echo "quiet loglevel=3" >"$root/etc/default/raspi-extra-cmdline"

# The initramfs must hold busybox and overlayroot's script, or the root silently boots read-write.
# The one built when the kernel was installed has them when they were unpacked by then; if not, it
# is built again.
initramfs_complete() {
  initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' ! -name '*.new' ! -name '*.dpkg-*' | sort | tail -n 1)
  [ -n "$initrd" ] || fail "no initramfs in /boot"
  contents=$(chroot "$root" lsinitramfs "/boot/${initrd##*/}")
  printf '%s\n' "$contents" | grep -qE '^(usr/)?bin/busybox$' &&
    printf '%s\n' "$contents" | grep -qx 'scripts/init-bottom/overlayroot'
}
if ! initramfs_complete; then
  chroot "$root" update-initramfs -u -k all
  initramfs_complete || fail "the initramfs lacks busybox or overlayroot"
fi

# Rewrite /boot/firmware (kernel, initramfs, device trees, config.txt, cmdline.txt) with these
# settings: raspi-firmware's kernel hook, as a kernel update runs it.
chroot "$root" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware
grep -q 'root=LABEL=register-root' "$root/boot/firmware/cmdline.txt" ||
  fail "cmdline.txt does not boot LABEL=register-root: $(cat "$root/boot/firmware/cmdline.txt")"

# Nothing left that belongs to one build: package caches and lists, logs.
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/var/log"/*.log
