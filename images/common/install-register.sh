#!/bin/sh
# Install the app bundle and the register's system configuration into a root file system, from the
# build machine (nothing runs inside the root). Both image recipes call it: images/debian (from the
# mmdebstrap customize hook) and images/pi-gen (the stage's 01-run.sh). images/README.md.
#
#   install-register.sh ROOT BUNDLE.tar.gz
#
# What it leaves:
#   /opt/register/releases/<release>/   the bundle; /opt/register/current links to it
#   /opt/register/bin/<command>         links to current/bin/<command> (the units run these)
#   /etc/systemd/system/*.service       registerd, register-ui, register-provision, enabled
#   /usr/lib/sysusers.d, /etc/udev/rules.d, /etc/modules-load.d   from the bundle's systemd/
#   /etc/fstab                          the data partition and its bind mounts (/ and /boot/firmware
#                                       are the recipe's)
#   journald on the data partition with a size cap, the machine id and time zone kept there
#   overlayroot: a read-only root under a tmpfs overlay, busybox in the initramfs
#   /data/register, /data/journal       the data partition's contents (the recipe makes it from /data)
set -eu

fail() {
  echo "install-register: $*" >&2
  exit 1
}

[ $# -eq 2 ] || {
  echo "usage: install-register.sh ROOT BUNDLE.tar.gz" >&2
  exit 64
}
root=$1
bundle=$2
if [ -z "$root" ] || [ "$(readlink -f "$root")" = / ]; then
  fail "refusing to install into the build machine's own root"
fi
if [ ! -d "$root/etc" ] || [ ! -d "$root/usr" ]; then fail "$root is not a root file system"; fi
[ -f "$bundle" ] || fail "no bundle at $bundle (npm run bundle -- --arch arm64 --out DIR)"
here=$(dirname "$(readlink -f "$0")")

# The manifest names the release (version and commit) and the architecture.
manifest=$(tar -xzOf "$bundle" manifest.json) || fail "$bundle has no manifest.json: not an app bundle"
field() { printf '%s\n' "$manifest" | sed -n "s/^  \"$1\": \"\\(.*\\)\",\$/\\1/p"; }
release=$(field release)
arch=$(field arch)
case $release in
'' | *[!A-Za-z0-9._+-]*) fail "the manifest's release is missing or not a plain name: '$release'" ;;
esac
[ "$arch" = arm64 ] || fail "the bundle is for $arch; a Raspberry Pi needs --arch arm64"

# The release, and the links the units and operators go through. A new release is a new directory
# and one link change, so an update can be rolled back by pointing current at the old one.
dest=$root/opt/register/releases/$release
rm -rf "$dest"
mkdir -p "$dest" "$root/opt/register/bin"
tar -xzf "$bundle" -C "$dest" --no-same-owner
ln -sfn "releases/$release" "$root/opt/register/current"
for cmd in registerd registerctl register-ui register-provision; do
  ln -sfn "../current/bin/$cmd" "$root/opt/register/bin/$cmd"
done
mkdir -p "$root/usr/local/bin"
ln -sfn /opt/register/bin/registerctl "$root/usr/local/bin/registerctl"

# Units, users, device names and drivers, as docs/operators.md lists them.
units=$dest/systemd
install -m 0644 "$units/registerd.service" "$units/register-ui.service" "$units/register-provision.service" \
  "$root/etc/systemd/system/"
install -D -m 0644 "$units/sysusers.d/register.conf" "$root/usr/lib/sysusers.d/register.conf"
install -D -m 0644 "$units/udev/90-pos.rules" "$root/etc/udev/rules.d/90-pos.rules"
install -D -m 0644 "$units/modules-load.d/register.conf" "$root/etc/modules-load.d/register.conf"
systemd-sysusers --root="$root" "$root/usr/lib/sysusers.d/register.conf"

# The image's own system files: journald's cap, the provisioning drop-in, overlayroot's setting.
cp -R "$here/rootfs/." "$root/"

# The machine id lives on the data partition, made there once by provisioning, which also writes it
# onto the kernel command line (systemd.machine_id= in cmdline.txt): systemd has it from the first
# instant of the next boot, before any partition is mounted, and journald names its files by it
# (docs/operators.md, "The machine id and a read-only root"). Until then (the first boot) the empty
# file gives a transient id. A bind mount of the data partition's file came too late for journald
# and lost to systemd's own transient mount (seen booting the image under qemu: images/qemu/).
: >"$root/etc/machine-id"
rm -f "$root/etc/systemd/system/etc-machine\\x2did.mount" "$root/etc/systemd/system/multi-user.target.wants/etc-machine\\x2did.mount"
# register-provision has no [Install] section: registerd.service wants it.
systemctl --root="$root" enable registerd.service register-ui.service

# The data partition, mounted at /data; registerd's state and journald's files are bound from it
# onto the paths the units and journald know. Every mount is nofail: without the card's data
# partition the register boots and says so (registerd needs /var/lib/register and stays down)
# instead of stopping in emergency mode with no till on the screen. The device timeout counts from the
# start of the boot, before udev runs: 90 s (systemd's default) so a slow boot still finds the
# partition; with nofail nothing else waits for it (the till starts at once).
# (/ and /boot/firmware are the recipe's: each names its partitions its own way.)
sed -i -e '/[[:space:]]\/data[[:space:]]/d' -e '/[[:space:]]\/var\/lib\/register[[:space:]]/d' \
  -e '/[[:space:]]\/var\/log\/journal[[:space:]]/d' "$root/etc/fstab"
cat >>"$root/etc/fstab" <<'EOF'
LABEL=register-data /data             ext4 noatime,nofail,x-systemd.device-timeout=90s     0 2
/data/register      /var/lib/register none bind,nofail,x-systemd.requires-mounts-for=/data 0 0
/data/journal       /var/log/journal  none bind,nofail,x-systemd.requires-mounts-for=/data 0 0
EOF

# Mount points on the root, and the data partition's first contents.
mkdir -p "$root/boot/firmware" "$root/var/lib/register" "$root/var/log/journal"
uid=$(awk -F: '$1 == "registerd" { print $3 }' "$root/etc/passwd")
journal_gid=$(awk -F: '$1 == "systemd-journal" { print $3 }' "$root/etc/group")
[ -n "$uid" ] || fail "systemd-sysusers made no user registerd"
[ -n "$journal_gid" ] || fail "no group systemd-journal in $root/etc/group (is systemd installed?)"
install -d -m 0750 -o "$uid" -g "$uid" "$root/data/register"
install -d -m 2755 -o 0 -g "$journal_gid" "$root/data/journal"

# The time zone lives on the data partition too: provisioning writes it there (the drop-in's --etc).
ln -sfn /var/lib/register/etc/timezone "$root/etc/timezone"
ln -sfn /var/lib/register/etc/localtime "$root/etc/localtime"

# A read-only root: overlayroot puts a tmpfs over / in the initramfs. recurse=0: only /, so
# /boot/firmware and /data stay the real, writable partitions. The initramfs needs busybox: without
# it overlayroot's script cannot run and the root silently boots read-write.
# BUSYBOX=y makes mkinitramfs fail without it rather than leave it out; overlayroot's own hook adds
# the overlay module and its script. Each recipe checks the initramfs it ships for both.
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'BUSYBOX=y\n' >"$root/etc/initramfs-tools/conf.d/register-busybox.conf"

echo "install-register: $release installed in $root"
