#!/bin/bash -e
# Inside the image (pi-gen's on_chroot): no login on the console for the build's first user, the
# services the register needs, and the initramfs again with busybox and overlayroot in it.
passwd -l "${FIRST_USER_NAME}"
systemctl disable ssh.service 2>/dev/null || true
systemctl enable systemd-timesyncd.service
update-initramfs -u -k all
for initrd in /boot/initrd.img-*; do
  lsinitramfs "$initrd" | grep -q 'scripts/init-bottom/overlayroot' || {
    echo "02-run-chroot.sh: $initrd lacks overlayroot" >&2
    exit 1
  }
  lsinitramfs "$initrd" | grep -qE '^(usr/)?bin/busybox$' || {
    echo "02-run-chroot.sh: $initrd lacks busybox: the overlay would silently not happen" >&2
    exit 1
  }
done
