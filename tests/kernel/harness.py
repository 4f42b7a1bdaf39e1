"""Boot Debian's kernel under qemu and run a command inside it, against this checkout.

The host kernel has no IPVS; Debian's `linux-image-amd64` has it as modules.
The guest:

- boots the uncompressed ELF `vmlinux` (decompressed once from the installed
  bzImage's xz payload; qemu boots it through its PVH entry, seconds faster
  than the bzImage under TCG) with `-accel tcg` (the nested /dev/kvm here
  cannot boot a stock kernel, see MACHINE-NOTES.md);
- starts from a tiny initramfs: busybox-static and the virtio/9p/overlay
  modules; its init mounts the host's `/` read-only over 9p, puts a tmpfs
  overlay on top (the guest may write anywhere; nothing reaches the host),
  mounts a second, writable 9p share (a fresh host directory: the only way
  out besides the console) at /results and switches into
  `tests/kernel/guest_init.sh`;
- that script loads IPVS, runs the command and writes its exit code to
  /results/rc, then powers off.

`boot(argv)` returns a `GuestRun` (console text, exit code, results
directory).  A guest that does not boot, hangs past the timeout or dies
without writing its exit code is a `GuestFailure` carrying the console:
never a skip.

Command line (for benchmarks and for working on the guest tests):

    .venv/bin/python tests/kernel/harness.py [--timeout S] -- CMD [ARG...]

runs CMD in the guest (in the checkout's directory, with the venv's python
on PATH), streams the console and exits with CMD's exit code.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SHOAL_KERNEL_CACHE", "/var/tmp/shoal-kernel"))
BUSYBOX = Path("/bin/busybox")
INITRD_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
ACCEL = "tcg"
MEMORY_MB = 2048
DEFAULT_TIMEOUT_S = 900.0
XZ_MAGIC = b"\xfd7zXZ\x00"


class GuestFailure(Exception):
    """The guest did not run the command to completion; `console` says how far it got."""

    def __init__(self, message: str, console: str) -> None:
        tail = "\n".join(console.splitlines()[-60:])
        super().__init__(f"{message}\n--- guest console (last 60 lines) ---\n{tail}")
        self.console = console


@dataclass
class GuestRun:
    kernel: str  # the guest's `uname -r`
    accel: str
    rc: int  # the command's exit code
    console: str
    results: Path  # the directory the guest saw as /results
    wall_s: float


# ------------------------------------------------------------------ building


def kernel_version() -> str:
    """The newest installed Debian kernel with its modules (linux-image-amd64)."""
    found = sorted(
        (p.name[len("vmlinuz-") :] for p in Path("/boot").glob("vmlinuz-*")),
        key=lambda v: [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", v)],
    )
    found = [v for v in found if Path("/lib/modules", v, "modules.dep").exists()]
    if not found:
        raise GuestFailure(
            "no kernel to boot: /boot/vmlinuz-* with /lib/modules/<version> not found "
            "(install linux-image-amd64; scripts/test.sh does as root)",
            "",
        )
    return found[-1]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def vmlinux(kver: str) -> Path:
    """The uncompressed kernel, decompressed from the bzImage's xz payload (cached)."""
    out = CACHE / kver / "vmlinux"
    src = Path("/boot", f"vmlinuz-{kver}")
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    blob = src.read_bytes()
    at = blob.find(XZ_MAGIC)
    while at >= 0:
        try:
            dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            elf = dec.decompress(blob[at:])
        except lzma.LZMAError:
            at = blob.find(XZ_MAGIC, at + 1)
            continue
        if elf[:4] == b"\x7fELF":
            _atomic_write(out, elf)
            return out
        at = blob.find(XZ_MAGIC, at + 1)
    # Not xz (a differently built kernel): qemu boots the bzImage too, only slower.
    return src


def _module_files(kver: str) -> list[str]:
    files: list[str] = []
    for mod in INITRD_MODULES:
        out = subprocess.run(
            ["modprobe", "-S", kver, "--show-depends", mod], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and parts[1] not in files:
                files.append(parts[1])
    return files


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /modules/$m || echo "shoal-init: insmod $m failed"; done
mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host || { echo "shoal-init: cannot mount the host root over 9p"; echo o > /proc/sysrq-trigger; }
mount -t tmpfs -o size=1G rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || { echo "shoal-init: overlay mount failed"; echo o > /proc/sysrq-trigger; }
mkdir -p /newroot/results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /newroot/results || { echo "shoal-init: cannot mount /results"; echo o > /proc/sysrq-trigger; }
run=$(sed -n 's/.*shoal.init=\([^ ]*\).*/\1/p' /proc/cmdline)
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh "$run"
"""


def initramfs(kver: str) -> Path:
    """busybox-static + the 9p/virtio/overlay modules + INIT, as a newc cpio (cached)."""
    files = _module_files(kver)
    key = hashlib.sha256(repr((INIT, files, BUSYBOX.stat().st_mtime)).encode()).hexdigest()[:12]
    out = CACHE / kver / f"initramfs-{key}.cpio"
    if out.exists():
        return out
    if not BUSYBOX.exists():
        raise GuestFailure("no /bin/busybox: install busybox-static (scripts/test.sh does as root)", "")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for sub in ("bin", "proc", "sys", "dev", "modules"):
            (root / sub).mkdir()
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
        names = []
        for f in files:
            shutil.copy(f, root / "modules" / Path(f).name)
            names.append(Path(f).name)
        (root / "modules.order").write_text("\n".join(names) + "\n")
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        listing = subprocess.run(
            ["find", "."], cwd=root, capture_output=True, check=True
        ).stdout
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=listing, capture_output=True, check=True
        ).stdout
        _atomic_write(out, cpio)
    return out


# ------------------------------------------------------------------ running


def boot(argv: list[str], timeout_s: float = DEFAULT_TIMEOUT_S, stream: bool = False) -> GuestRun:
    """Run `argv` in a fresh guest (cwd: this checkout); raise GuestFailure unless it ran to the end."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise GuestFailure("qemu-system-x86_64 not found: install qemu-system-x86 (scripts/test.sh does as root)", "")
    kver = kernel_version()
    kernel = vmlinux(kver)
    initrd = initramfs(kver)
    results = Path(tempfile.mkdtemp(prefix="shoal-guest-"))
    (results / "argv").write_text(shlex.join(argv) + "\n")
    (results / "cwd").write_text(str(REPO) + "\n")
    append = (
        "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init "
        f"shoal.init={REPO / 'tests' / 'kernel' / 'guest_init.sh'} shoal.accel={ACCEL}"
    )
    cmd = [
        qemu, "-accel", ACCEL, "-cpu", "max", "-smp", str(min(2, os.cpu_count() or 1)), "-m", str(MEMORY_MB),
        "-nographic", "-no-reboot", "-nic", "none", "-serial", "stdio", "-monitor", "none",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none,multidevs=remap",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    chunks: list[bytes] = []
    os.set_blocking(proc.stdout.fileno(), False)
    timed_out = False
    try:
        while True:
            try:
                data = proc.stdout.read()
            except BlockingIOError:
                data = None
            if data:
                chunks.append(data)
                if stream:
                    sys.stdout.write(data.decode(errors="replace"))
                    sys.stdout.flush()
            if proc.poll() is not None and not data:
                break
            if time.monotonic() - started > timeout_s:
                timed_out = True
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rest = proc.stdout.read() if proc.stdout else None
        if rest:
            chunks.append(rest)
    wall = time.monotonic() - started
    console = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    if timed_out:
        raise GuestFailure(f"guest hung: no power-off after {timeout_s:.0f} s (qemu killed)", console)
    rc_file = results / "rc"
    if not rc_file.exists():
        raise GuestFailure(
            f"guest died before the command finished (qemu exit {proc.returncode}, no /results/rc)", console
        )
    m = re.search(r"shoal-guest: kernel (\S+) accel (\S+)", console)
    if not m:
        raise GuestFailure("guest console lost: no 'shoal-guest: kernel' line", console)
    return GuestRun(
        kernel=m.group(1), accel=m.group(2), rc=int(rc_file.read_text().strip() or "255"),
        console=console, results=results, wall_s=wall,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()
    try:
        run = boot(a.argv, timeout_s=a.timeout, stream=True)
    except GuestFailure as e:
        print(f"\nharness: {e}", file=sys.stderr)
        return 2
    print(f"\nharness: kernel {run.kernel}, accel {run.accel}, exit {run.rc}, {run.wall_s:.1f} s wall, results in {run.results}")
    return run.rc


if __name__ == "__main__":
    sys.exit(main())
