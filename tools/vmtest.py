#!/usr/bin/env python3
"""Run a command under a second Linux kernel: rawprobe's VM test runner.

Some of rawprobe's features (kprobes, fentry/fexit) need kernel support that the
development machine may lack.  This script boots one of Debian's stock kernels
in qemu, shares the host's root file system read-only and the repository
read-write over virtio-9p, runs ONE command inside as root and exits with that
command's exit status.  `make vmtest` uses it to run the tests marked `vm`.

    tools/vmtest.py [options] [--] COMMAND [ARG...]
    tools/vmtest.py -- python3 -m pytest -q -m vm tests/test_link.py
    tools/vmtest.py --kernel 6.12 -- uname -r
    tools/vmtest.py --setup            # download and prepare the kernel only

Under TCG (no usable KVM) the guest runs Python ~20x slower than the host, so
run only what needs this kernel, all in one boot: pass pytest only the files
holding `vm` tests (collecting the rest costs a minute), and set
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 (hypothesis's plugin imports hypothesis at the
end of every session: ~30 s in the guest).  `make vmtest` does both.

The guest needs nothing installed: a busybox PID 1 loads the 9p modules, mounts
the host's / (read-only) and the shared directories (read-write, same paths),
mounts proc, sysfs, devtmpfs, devpts, tmpfs (/tmp /run /dev/shm), tracefs,
debugfs, bpffs and cgroup2, then chroots into the host's root and runs the
command with stdin at /dev/null.  stdout and stderr stream, merged, to this
script's stdout through a serial port of their own; the exit status comes back
through another one.

Inside the guest these are set (tests use them, see tests/conftest.py):
    RAWPROBE_VM=1               we are in the test VM
    RAWPROBE_VM_KERNEL          the guest kernel's release (`uname -r`)
    RAWPROBE_VM_SERIES          the kernel series booted (6.1 or 6.12)
    RAWPROBE_VM_KCONFIG         path of the guest kernel's .config
    RAWPROBE_VM_PYTHON          the interpreter running this script; its
                                directory leads PATH (no pyenv shims)
    RAWPROBE_VM_MODULES         a directory of TEST_MODULES (.ko files and
                                their load order) for the tests to insmod
    XDG_CACHE_HOME=/tmp/.cache  the host's home is read-only in the guest

Kernels: the newest `linux-image-<series>.*-amd64[-unsigned]` package apt knows
is downloaded once with `apt-get download` and prepared under the cache
directory ($RAWPROBE_VM_CACHE, default ${XDG_CACHE_HOME:-/var/tmp}/rawprobe-vm).
Later runs reuse the newest prepared kernel of the series; --refresh looks for
a newer package.  The bzImage's payload is unpacked to the ELF vmlinux and
booted through PVH, which skips the in-guest xz decompression (about 3 s under
TCG).

Exit status: the command's; 124 when --timeout expired; 125 setup failed;
255 the guest never reported a status (boot failure, panic: the console's tail
is printed).  Requirements: qemu-system-x86, busybox-static, dpkg, apt.
"""
from __future__ import annotations

import argparse
import fcntl
import lzma
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERIES = ("6.1", "6.12")
DEFAULT_SERIES = "6.1"
# Modules the guest needs before it can mount the host over 9p; their
# dependencies are read from each module's .modinfo and loaded first.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
# Modules tests load themselves (tests/conftest.py, load_test_module): kept
# under <kernel>/test-modules with their dependencies and a load order, not
# loaded at boot.  nf_conntrack registers kfuncs (bpf_xdp_ct_lookup...): the
# module-kfunc tests call them through the module's BTF.  crc32c_generic first:
# libcrc32c (nf_conntrack's dependency) needs the crc32c algorithm, a soft
# dependency its modinfo's depends= does not name.
TEST_MODULES = ("crc32c_generic", "nf_conntrack")
# Host environment variables that the command inside sees unchanged.
PASS_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV",
            "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
            "PYTHONWARNINGS", "PYTEST_ADDOPTS", "HYPOTHESIS_PROFILE", "CI",
            "NO_COLOR")
GUEST_DIR = "/run/rawprobe-vm"   # where cmd.sh and the kernel config land
# Mounted afresh in the guest: the host's files there are not visible.
GUEST_FRESH = ("/tmp", "/run", "/dev", "/proc", "/sys")
EXIT_TIMEOUT, EXIT_SETUP, EXIT_NO_STATUS = 124, 125, 255


class SetupError(Exception):
    """The VM could not be prepared; the message says what to install or do."""


def log(msg: str) -> None:
    print(f"vmtest: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ kernel cache --

def default_cache() -> Path:
    if os.environ.get("RAWPROBE_VM_CACHE"):
        return Path(os.environ["RAWPROBE_VM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or "/var/tmp") / "rawprobe-vm"


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def package_pattern(series: str) -> re.Pattern[str]:
    # 6.1.0-56-amd64, 6.12.117+deb12-amd64, 6.12.9-amd64; not -cloud/-rt/-dbg.
    return re.compile(rf"linux-image-({re.escape(series)}\.\d+(?:-\d+|\+deb\d+\w*)?-amd64)"
                      r"(-unsigned)?")


def apt_packages(series: str) -> list[str]:
    """Kernel image packages of `series` that apt knows, newest first."""
    pat = package_pattern(series)
    for attempt in range(2):
        out = subprocess.run(["apt-cache", "pkgnames", f"linux-image-{series}."],
                             capture_output=True, text=True).stdout
        names = [n for n in out.split() if pat.fullmatch(n)]
        if names:
            # Newest release first; the -unsigned image (same kernel, no
            # signature) before the signed one.
            return sorted(names, key=lambda n: (version_key(pat.fullmatch(n)[1]),
                                                n.endswith("-unsigned")), reverse=True)
        if attempt == 0:
            log("apt knows no such kernel yet: running apt-get update")
            subprocess.run(["apt-get", "update", "-qq"], check=False)
    raise SetupError(f"apt offers no linux-image-{series}.*-amd64 package; check "
                     "the apt sources (Debian bookworm has 6.1 and 6.12)")


def cached_kernels(cache: Path, series: str) -> list[Path]:
    """Prepared kernels of `series` in the cache, newest first."""
    dirs = [d for d in cache.glob(f"{series}.*") if (d / "ready").exists()]
    return sorted(dirs, key=lambda d: version_key(d.name), reverse=True)


def release_of(package: str) -> str:
    """linux-image-6.1.0-56-amd64-unsigned -> 6.1.0-56-amd64 (its uname -r)."""
    m = re.fullmatch(r"linux-image-(.+?)(?:-unsigned)?", package)
    if not m:
        raise SetupError(f"{package}: not a linux-image-<release> package name")
    return m[1]


def ensure_kernel(cache: Path, series: str, package: str | None, refresh: bool) -> Path:
    """Return the directory of a prepared kernel, preparing it if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # one preparer at a time
        have = cached_kernels(cache, series)
        if have and not refresh and not package:
            add_test_modules(cache, have[0])
            return have[0]
        candidates = [package] if package else apt_packages(series)
        kdir = cache / release_of(candidates[0])
        if (kdir / "ready").exists():
            add_test_modules(cache, kdir)
            return kdir
        errors = []
        for pkg in candidates[:2]:            # the -unsigned image, else the signed
            try:
                kdir = prepare_kernel(cache, pkg)
                break
            except SetupError as e:
                errors.append(str(e))
        else:
            raise SetupError("; ".join(errors))
        if not package:                       # a newer kernel replaces older ones
            for old in cached_kernels(cache, series):
                if old != kdir:
                    shutil.rmtree(old, ignore_errors=True)
        return kdir


def prepare_kernel(cache: Path, package: str) -> Path:
    """Download `package`, keep what the VM needs, return its cache directory."""
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="prep.", dir=cache))
    try:
        log(f"downloading {package} (once; cached in {cache})")
        deb, tree = download(work, package)
        releases = [p.name for p in (tree / "lib/modules").iterdir()]
        if len(releases) != 1:
            raise SetupError(f"{deb.name}: expected one /lib/modules/<release>, got {releases}")
        release = releases[0]
        kdir = work / release
        kdir.mkdir()
        boot = tree / "boot"
        shutil.copy(boot / f"config-{release}", kdir / "config")
        config = (kdir / "config").read_text()
        bzimage = (boot / f"vmlinuz-{release}").read_bytes()
        vmlinux = unpack_vmlinux(bzimage) if "\nCONFIG_PVH=y\n" in config else None
        if vmlinux is None:
            log("booting the compressed bzImage (no PVH or unknown compression): slower")
        (kdir / "kernel").write_bytes(vmlinux or bzimage)
        copy_modules(tree / "lib/modules" / release / "kernel", kdir / "modules", BOOT_MODULES)
        copy_modules(tree / "lib/modules" / release / "kernel", kdir / "test-modules",
                     TEST_MODULES)
        (kdir / "package").write_text(deb.name + "\n")
        (kdir / "ready").touch()
        final = cache / release
        if final.exists():
            shutil.rmtree(final)
        kdir.rename(final)
        log(f"prepared {release} in {time.monotonic() - t0:.1f} s")
        return final
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError(f"preparing {package} failed: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unpack_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside a bzImage (xz or zstd payload), or None."""
    candidates = []
    i = bzimage.find(b"\xfd7zXZ\x00")
    if i >= 0:
        candidates.append(lambda: lzma.LZMADecompressor().decompress(bzimage[i:]))
    j = bzimage.find(b"\x28\xb5\x2f\xfd")
    if j >= 0 and shutil.which("zstd"):
        candidates.append(lambda: subprocess.run(
            ["zstd", "-qdc"], input=bzimage[j:], capture_output=True).stdout)
    for unpack in candidates:
        try:
            elf = unpack()
        except (lzma.LZMAError, OSError):
            continue
        if elf[:4] == b"\x7fELF":
            return elf
    return None


def download(work: Path, package: str) -> tuple[Path, Path]:
    """``apt-get download`` ``package`` (``name`` or ``name=version``) into
    ``work`` and unpack it there: the .deb and the unpacked tree."""
    def get() -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", "download", "-q", package], cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    got = get()
    if got.returncode != 0:
        # Stale package lists are the usual cause: refresh once and retry.
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        got = get()
    debs = list(work.glob("*.deb"))
    if got.returncode != 0 or not debs:
        raise SetupError(f"apt-get download {package} failed: {got.stderr.strip()}")
    tree = work / "x"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True)
    return debs[0], tree


def add_test_modules(cache: Path, kdir: Path) -> None:
    """Give a kernel prepared before TEST_MODULES existed its test-modules
    directory: the package downloaded again, only those modules kept."""
    if all((kdir / "test-modules" / f"{m}.ko").exists() for m in TEST_MODULES):
        return
    deb = (kdir / "package").read_text().strip()
    name, version = deb.split("_")[:2]
    work = Path(tempfile.mkdtemp(prefix="prep.", dir=cache))
    try:
        log(f"adding the test modules ({', '.join(TEST_MODULES)}) to {kdir.name}")
        _, tree = download(work, f"{name}={version}")
        copy_modules(tree / "lib/modules" / kdir.name / "kernel", work / "test-modules",
                     TEST_MODULES)
        shutil.rmtree(kdir / "test-modules", ignore_errors=True)
        (work / "test-modules").rename(kdir / "test-modules")
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError(f"adding test modules to {kdir.name} failed: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)


def copy_modules(moddir: Path, dest: Path, names: tuple[str, ...]) -> None:
    """Copy the modules ``names`` and their dependencies, uncompressed, plus a
    load order."""
    index = {}
    for p in moddir.rglob("*.ko*"):
        index[p.name.split(".ko")[0].replace("-", "_")] = p
    dest.mkdir()
    order: list[str] = []

    def add(name: str) -> None:
        name = name.replace("-", "_")
        if name in order or name not in index:   # absent: built in (or not needed)
            return
        src = index[name]
        data = src.read_bytes()
        if src.suffix == ".xz":
            data = lzma.decompress(data)
        elif src.suffix == ".zst":
            data = subprocess.run(["zstd", "-qdc", str(src)], capture_output=True,
                                  check=True).stdout
        deps = re.search(rb"depends=([\w,-]*)\x00", data)
        for dep in (deps[1].decode().split(",") if deps else []):
            if dep:
                add(dep)
        (dest / f"{name}.ko").write_bytes(data)
        order.append(name)

    for name in names:
        add(name)
    (dest / "order").write_text(" ".join(order) + "\n")


# ------------------------------------------------------------- initramfs ----

# PID 1 of the guest.  Busybox applets are called through $bb, so nothing has
# to be installed into the initramfs.  Its output goes to the console log.
INIT = r"""#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
say() { echo "rawprobe-vm: $*"; }
finish() {   # report the status on the status port, then power off at once
    echo "$1" > /dev/ttyS2
    $bb sync
    $bb poweroff -f
}
for m in $($bb cat /vm/modules/order); do
    $bb insmod /vm/modules/$m.ko || say "insmod $m failed"
done
R=/newroot
O=trans=virtio,version=9p2000.L,msize=512000
$bb mkdir -p $R
$bb mount -t 9p -o $O,ro,cache=loose root $R || { say "cannot mount the host's / over 9p"; finish 255; }
$bb mount -t proc proc $R/proc
$bb mount -t sysfs sysfs $R/sys
$bb mount -t devtmpfs devtmpfs $R/dev
$bb mkdir -p $R/dev/pts $R/dev/shm
$bb mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
$bb mount -t tmpfs tmpfs $R/dev/shm
$bb mount -t tmpfs -o mode=1777 tmpfs $R/tmp
$bb mount -t tmpfs -o mode=755 tmpfs $R/run
$bb mount -t tracefs tracefs $R/sys/kernel/tracing
$bb mount -t debugfs debugfs $R/sys/kernel/debug
$bb mount -t bpf bpf $R/sys/fs/bpf
$bb mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
# Read-write shares after the tmpfs mounts, so a share under /tmp is visible.
while IFS=' ' read -r tag path; do
    $bb mkdir -p "$R$path" && $bb mount -t 9p -o $O,cache=mmap "$tag" "$R$path" ||
        say "cannot mount $path read-write"
done < /vm/shares
$bb mkdir -p $R/run/rawprobe-vm
$bb cp /vm/cmd.sh /vm/config $R/run/rawprobe-vm/
$bb stty -F /dev/ttyS1 raw -echo
sh=/bin/sh
[ -x $R/bin/bash ] && sh=/bin/bash
$bb chroot $R $sh /run/rawprobe-vm/cmd.sh </dev/null >/dev/ttyS1 2>&1
finish $?
"""


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An initramfs archive ("newc" cpio) of (path, mode, data) entries.

    A character device's data is its (major, minor) as two 4-byte ints."""
    out = bytearray()

    def pad4() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (path, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], 1):
        rdev = (0, 0)
        if mode & 0o170000 == 0o020000:
            rdev, data = struct.unpack("II", data), b""
        name = path.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name
        pad4()
        out += data
        pad4()
    return bytes(out)


def build_initramfs(kdir: Path, busybox: Path, cmd_sh: str, shares: list[tuple[str, str]]) -> bytes:
    entries: list[tuple[str, int, bytes]] = [
        ("dev", 0o40755, b""), ("dev/console", 0o20600, struct.pack("II", 5, 1)),
        ("proc", 0o40755, b""), ("sys", 0o40755, b""), ("bin", 0o40755, b""),
        ("bin/busybox", 0o100755, busybox.read_bytes()),
        ("init", 0o100755, INIT.encode()),
        ("vm", 0o40755, b""), ("vm/modules", 0o40755, b""),
        ("vm/cmd.sh", 0o100644, cmd_sh.encode()),
        ("vm/config", 0o100644, (kdir / "config").read_bytes()),
        ("vm/shares", 0o100644, "".join(f"{t} {p}\n" for t, p in shares).encode()),
    ]
    for ko in sorted((kdir / "modules").iterdir()):
        entries.append((f"vm/modules/{ko.name}", 0o100644, ko.read_bytes()))
    return cpio_newc(entries)


def static_busybox() -> Path:
    for p in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if p.exists():
            with open(p, "rb") as f:
                head = f.read(64)
                # ELF64: walk the program headers looking for PT_INTERP (3).
                phoff, = struct.unpack_from("<Q", head, 32)
                phentsize, phnum = struct.unpack_from("<HH", head, 54)
                f.seek(phoff)
                ph = f.read(phentsize * phnum)
            if not any(struct.unpack_from("<I", ph, k * phentsize)[0] == 3 for k in range(phnum)):
                return p
    raise SetupError("no static busybox: apt-get install busybox-static")


# ------------------------------------------------------------------- run ----

def guest_script(argv: list[str], cwd: str, kdir: Path, series: str,
                 extra_env: list[str]) -> str:
    """The shell script the guest runs in the chroot."""
    # Put the running interpreter's directory first: pyenv shims are shell
    # scripts forking ~20 processes, seconds per python start under TCG.
    # (Not resolving symlinks keeps a virtualenv's bin/ and so its packages.)
    bindir = os.path.dirname(sys.executable) if sys.executable else ""
    dirs = [bindir] + os.environ.get("PATH", "/usr/bin:/bin").split(":")
    path = ":".join(dict.fromkeys(d for d in dirs if d))    # dedup, keep order
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.update(PATH=path, TERM="dumb", PYTHONUNBUFFERED="1",
               XDG_CACHE_HOME="/tmp/.cache", RAWPROBE_VM="1",
               RAWPROBE_VM_KERNEL=kdir.name, RAWPROBE_VM_SERIES=series,
               RAWPROBE_VM_KCONFIG=f"{GUEST_DIR}/config",
               RAWPROBE_VM_PYTHON=sys.executable or "python3",
               RAWPROBE_VM_MODULES=str(kdir / "test-modules"))
    for item in extra_env:
        k, _, v = item.partition("=")
        env[k] = v
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines += [f"cd -- {shlex.quote(cwd)} || exit 254", "exec " + shlex.join(argv)]
    return "\n".join(lines) + "\n"


def choose_accel(accel: str) -> list[str]:
    if accel == "auto":
        # /dev/kvm on PVM hosts cannot boot a stock kernel: use TCG there.
        accel = "tcg"
        if (os.access("/dev/kvm", os.R_OK | os.W_OK) and not Path("/sys/module/kvm_pvm").exists()
                and re.search(r"\b(vmx|svm)\b", Path("/proc/cpuinfo").read_text())):
            accel = "kvm"
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def qemu_command(args: argparse.Namespace, kdir: Path, io: Path, fsdev: list[str]) -> list[str]:
    # Serial ports: ttyS0 the kernel console (a log file), ttyS1 the command's
    # output (our stdout), ttyS2 its exit status (a file).
    # cryptomgr.notests skips the crypto self-tests: ~0.4 s of boot under TCG.
    append = ("console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init 8250.nr_uarts=4 "
              "cryptomgr.notests " + args.append).strip()
    return ["qemu-system-x86_64", *choose_accel(args.accel), "-M", "pc",
            "-smp", str(args.cpus), "-m", args.mem, "-nodefaults", "-no-user-config",
            "-display", "none", "-nic", "none", "-no-reboot",
            "-kernel", str(kdir / "kernel"), "-initrd", str(io / "initrd"),
            "-append", append,
            "-chardev", f"file,id=con,path={qemu_opt(str(io / 'console.log'))}",
            "-serial", "chardev:con",
            "-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out",
            "-chardev", f"file,id=rc,path={qemu_opt(str(io / 'rc'))}",
            "-serial", "chardev:rc", *fsdev]


def qemu_opt(value: str) -> str:
    return value.replace(",", ",,")         # qemu's escape for a comma in a value


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    if not shutil.which("qemu-system-x86_64"):
        raise SetupError("qemu-system-x86_64 missing: apt-get install qemu-system-x86")
    busybox = static_busybox()
    kdir = ensure_kernel(args.cache, args.kernel, args.package, args.refresh)
    args.kernel = next((s for s in SERIES if kdir.name.startswith(s + ".")), args.kernel)
    if args.setup:
        log(f"ready: {kdir}")
        return 0
    cwd = os.path.realpath(args.cwd)
    shares = [os.path.realpath(s) for s in args.share]
    for s in shares:
        if "\n" in s or s == "/":
            raise SetupError(f"cannot share {s!r} read-write")
    if not any(within(cwd, s) for s in shares) and any(within(cwd, d) for d in GUEST_FRESH):
        raise SetupError(f"{cwd} is not visible in the guest, which has fresh "
                         f"{', '.join(GUEST_FRESH)}: share it with --share or change --cwd")
    fsdev = ["-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
             "-device", "virtio-9p-pci,fsdev=root,mount_tag=root"]
    tags = []
    for i, s in enumerate(shares):
        fsdev += ["-fsdev", f"local,id=rw{i},path={qemu_opt(s)},security_model=none,multidevs=remap",
                  "-device", f"virtio-9p-pci,fsdev=rw{i},mount_tag=rw{i}"]
        tags.append((f"rw{i}", s))
    script = guest_script(args.command, cwd, kdir, args.kernel, args.env)
    io = Path(tempfile.mkdtemp(prefix="rawprobe-vm."))
    qemu = None
    try:
        (io / "initrd").write_bytes(build_initramfs(kdir, busybox, script, tags))
        argv = qemu_command(args, kdir, io, fsdev)
        if args.verbose:
            log(f"kernel {kdir.name}, setup {time.monotonic() - t0:.2f} s; booting")
        sys.stdout.flush()
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        try:
            qemu.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
            log(f"timed out after {args.timeout:g} s")
            tail(io / "console.log")
            return EXIT_TIMEOUT
        console = read_text(io / "console.log")
        status = read_text(io / "rc").strip()
        if not status.isdigit():
            log(f"the guest reported no exit status (boot failure or panic; "
                f"qemu exit {qemu.returncode})")
            tail(io / "console.log")
            return EXIT_NO_STATUS
        if args.verbose:
            sys.stderr.write(console)
            log(f"done in {time.monotonic() - t0:.2f} s, status {status}")
        elif re.search(r"\b(BUG|WARNING|Oops|Kernel panic)\b", console):
            log("the guest kernel reported problems; its console:")
            sys.stderr.write(console)
        return int(status)
    finally:
        if qemu is not None and qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        shutil.rmtree(io, ignore_errors=True)


def within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def read_text(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def tail(p: Path, n: int = 30) -> None:
    lines = read_text(p).splitlines(True)[-n:]
    if lines:
        log("the guest console's last lines:")
        sys.stderr.write("".join(lines))


def parse_args(argv: list[str]) -> argparse.Namespace:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(
        description="Run COMMAND as root under one of Debian's stock kernels in qemu, "
                    "with the host's / read-only and the repository read-write.",
        epilog="Environment: RAWPROBE_VM_SERIES (kernel), RAWPROBE_VM_CACHE, "
               "RAWPROBE_VM_TIMEOUT, RAWPROBE_VM_ACCEL, RAWPROBE_VM_APPEND.")
    ap.add_argument("--kernel", choices=SERIES,
                    default=os.environ.get("RAWPROBE_VM_SERIES") or DEFAULT_SERIES,
                    help="kernel series to boot (default %(default)s)")
    ap.add_argument("--package", help="exact linux-image package to boot instead")
    ap.add_argument("--refresh", action="store_true",
                    help="look for a newer kernel package than the cached one")
    ap.add_argument("--cache", type=Path, default=default_cache(),
                    help="where prepared kernels live (default %(default)s)")
    ap.add_argument("--setup", action="store_true", help="prepare the kernel, run nothing")
    ap.add_argument("--share", action="append", default=None, metavar="DIR",
                    help=f"share DIR read-write at the same path (default: {repo})")
    ap.add_argument("--cwd", default=os.getcwd(), help="working directory in the guest")
    ap.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                    help="extra environment variable for the command")
    ap.add_argument("--timeout", type=float,
                    default=float(os.environ.get("RAWPROBE_VM_TIMEOUT") or 1800),
                    help="seconds before the VM is killed (exit 124; default %(default)s)")
    ap.add_argument("--mem", default="1G", help="guest memory (default %(default)s)")
    ap.add_argument("--cpus", type=int, default=1, help="vCPUs (default %(default)s)")
    ap.add_argument("--accel", choices=("auto", "tcg", "kvm"),
                    default=os.environ.get("RAWPROBE_VM_ACCEL") or "auto")
    ap.add_argument("--append", default=os.environ.get("RAWPROBE_VM_APPEND", ""),
                    help="extra kernel command line")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print timings and the guest's console log")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command and not args.setup:
        ap.error("no COMMAND given (e.g. -- python3 -m pytest -q -m vm tests)")
    if args.kernel not in SERIES:
        ap.error(f"RAWPROBE_VM_SERIES={args.kernel}: choose one of {', '.join(SERIES)}")
    if args.share is None:
        args.share = [str(repo)]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # SIGTERM (a CI timeout, make killed) must not leave qemu running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    except SetupError as e:
        log(f"setup failed: {e}")
        return EXIT_SETUP
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
