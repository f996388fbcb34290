#!/bin/sh
# Builds the root filesystem of a lab test host: Debian SUITE (bookworm or trixie) with systemd and
# OpenSSH, which the lab boots with podman --systemd=always. Usage: recipe.sh SUITE ROOTFS
# Any change to this folder changes the image tags (a hash of it), so the images are rebuilt.
set -eu
suite=$1
root=$2
here=$(cd "$(dirname "$0")" && pwd)
case "$suite" in
    bookworm|trixie) ;;
    *) echo "recipe.sh: suite '$suite' is not one the lab knows (bookworm, trixie)" >&2; exit 2 ;;
esac

debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,openssh-server,python3,sudo \
    "$suite" "$root"

cp -a "$here/overlay/." "$root/"
# Every lab login comes from one source address (127.0.0.1), where on Azure each client has its own;
# the tests' deliberate refusals would make OpenSSH 9.8+ penalize that source and refuse the next
# test's connections (PerSourcePenalties). bookworm's 9.2 does not know the keyword.
if [ "$suite" = trixie ]; then
    printf 'PerSourcePenalties no\n' > "$root/etc/ssh/sshd_config.d/00-lab-penalties.conf"
fi
chmod 0755 "$root/usr/local/sbin/lab-init" "$root/usr/local/sbin/lab-boot" \
    "$root/etc/systemd/system-generators/lab-sshd-socket-generator"
ln -sf /etc/systemd/system/lab-init.service "$root/etc/systemd/system/multi-user.target.wants/lab-init.service"

# Each host makes its own host keys at first boot (lab-init), like a cloud VM does.
rm -f "$root"/etc/ssh/ssh_host_*
# pam_loginuid needs CAP_AUDIT_CONTROL, which containers lack; required, it refuses every login.
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' "$root/etc/pam.d/sshd"
# Units that have nothing to do in a container and only slow the boot; and two trixie has that
# Ubuntu 24.04 has not: Debian's first-boot host key unit (lab-init makes the keys) and systemd
# 257's generator of extra sshd listeners (an AF_UNIX socket, AF_VSOCK in VMs).
for unit in getty.target console-getty.service systemd-logind.service apt-daily.timer \
        apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer sshd-keygen.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-ssh-generator"
: > "$root/etc/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
