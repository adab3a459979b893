#!/bin/bash -e
# pi-gen runs this on the build machine with ROOTFS_DIR set: the app bundle and the register's
# configuration, by the same script as the Debian recipe (images/common/install-register.sh, copied
# into files/ by images/pi-gen/build.sh together with the bundle).
"${STAGE_DIR}/01-register/files/common/install-register.sh" "${ROOTFS_DIR}" \
  "${STAGE_DIR}/01-register/files/register-bundle.tar.gz"

# Raspberry Pi OS names its root by PARTUUID in fstab and cmdline.txt; keep that, and put the
# overlay and the consoles on the kernel command line: tty1 belongs to the till.
cmdline="${ROOTFS_DIR}/boot/firmware/cmdline.txt"
sed -i -e 's/ console=tty1//' -e 's/ quiet//' -e 's/$/ console=tty3 quiet loglevel=3/' "$cmdline"
