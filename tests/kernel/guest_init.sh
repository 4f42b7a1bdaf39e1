#!/bin/sh
# PID 1 of the kernel-test guest (after the initramfs switched into the
# host's root, read-only over 9p with a tmpfs overlay): mount the usual
# filesystems, load IPVS, run the command the host wrote to /results/argv
# in the checkout, write its exit code to /results/rc, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mkdir -p /run/netns
ip link set lo up
hostname shoal-guest
accel=$(sed -n 's/.*shoal.accel=\([^ ]*\).*/\1/p' /proc/cmdline)
echo; echo "shoal-guest: kernel $(uname -r) accel ${accel:-unknown}"
modprobe ip_vs || echo "shoal-guest: modprobe ip_vs failed"
cwd=$(cat /results/cwd)
cd "$cwd" || echo "shoal-guest: no $cwd"
export PATH="$cwd/.venv/bin:$PATH" HOME=/root SHOAL_IN_GUEST=1 PYTHONDONTWRITEBYTECODE=1
echo "shoal-guest: running $(cat /results/argv)"
eval "$(cat /results/argv)" </dev/null 2>&1
rc=$?
echo "shoal-guest: exit $rc"
echo "$rc" > /results/rc
sync
echo o > /proc/sysrq-trigger
while :; do sleep 1 2>/dev/null; done  # init must not exit (a panic) while the power-off completes
