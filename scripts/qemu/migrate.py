#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Live migration of a VM that owns a gpup VF, with real QEMU as the VFIO
# migration client.  Runs inside the test guest, chrooted into the host's
# read-only root (so /usr/bin/qemu-system-x86_64 is the host's QEMU), with
# /dev, /sys (debugfs included) and a writable work directory bound in.
#
#   migrate.py demo  VF_A VF_B      one migration A -> B with a summary
#   migrate.py tests VF_A VF_B      the end-to-end tests, TAP output
#
# The nested VMs run firmware only (SeaBIOS without a boot disk): they are
# running VMs, so every VFIO state QEMU drives is exercised, and they boot
# in a second even under TCG inside TCG.
import json
import os
import signal
import socket
import subprocess
import sys
import time

QEMU = "/usr/bin/qemu-system-x86_64"
WORK = os.environ.get("GPUP_WORK", "/tmp/gpup-qemu")
SIM = "/sys/kernel/debug/gpup_sim"
VFIO = "/sys/kernel/debug/gpup_vfio_pci"
DOWNTIME_MS = int(os.environ.get("GPUP_DOWNTIME_MS", "3000"))
RELAXED_DOWNTIME_MS = 30000
RELAX_AFTER_S = 60


def log(msg):
    print("# " + msg, flush=True)


class QMPError(Exception):
    pass


class QMP:
    """A minimal QMP client: one command at a time, events kept."""

    def __init__(self, path, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise QMPError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise QMPError("%s: %s" % (name, r["error"]["desc"]))
            return r.get("return")

    def close(self):
        self.sock.close()


class VM:
    """One nested QEMU owning a VF."""

    def __init__(self, name, vf, incoming=False):
        self.name = name
        self.vf = vf
        qmp = os.path.join(WORK, name + ".qmp")
        if os.path.exists(qmp):
            os.unlink(qmp)
        args = [QEMU, "-machine", "q35,accel=tcg", "-nodefaults",
                "-display", "none", "-m", "32", "-smp", "1",
                # x-no-mmap: the VF's BARs stay out of the IOMMU, whose
                # legacy dirty bitmap refuses their sub-page windows.
                "-device", "vfio-pci,host=%s,id=gpu0,enable-migration=on,"
                "x-no-mmap=on" % vf, "-qmp", "unix:%s,server=on,wait=off" % qmp,
                "-serial", "none", "-monitor", "none"]
        if incoming:
            # QEMU keeps the device in RESUMING until the VM starts, so
            # the destination starts as usual; its VF is compared before
            # free-running is switched on for it (see migrate()).
            args += ["-incoming", "defer"]
        self.log = open(os.path.join(WORK, name + ".log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.qmp = QMP(qmp)

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def quit(self):
        try:
            self.qmp.cmd("quit")
        except (QMPError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def sim_read(vf, name):
    with open(os.path.join(SIM, vf, name)) as f:
        return f.read().strip()


def sim_write(vf, name, val):
    with open(os.path.join(SIM, vf, name), "w") as f:
        f.write(str(val))


def rebind(vf):
    """Bind @vf to gpup_vfio_pci again (its driver_override stays), so
    that the driver probes the provider's current caps."""
    dev = "/sys/bus/pci/devices/" + vf
    with open(dev + "/driver/unbind", "w") as f:
        f.write(vf)
    with open("/sys/bus/pci/drivers_probe", "w") as f:
        f.write(vf)


def vfio_status(vf):
    out = {}
    with open(os.path.join(VFIO, vf, "status")) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def wait_vf_state(vf, state, timeout=60.0):
    """True when the VF's migration state becomes @state in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if vfio_status(vf)["state"] == state:
            return True
        time.sleep(0.05)
    return False


def steps_advance(vf, timeout=30.0):
    """True when the VF's step counter moves (it runs free) in time."""
    start = int(sim_read(vf, "steps"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(sim_read(vf, "steps")) > start:
            return True
        time.sleep(0.05)
    return False


CAPS = [{"capability": "return-path", "state": True},
        {"capability": "switchover-ack", "state": True}]


def start_migration(src, dst, bandwidth=None):
    sock = os.path.join(WORK, "mig.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    uri = "unix:" + sock
    dst.qmp.cmd("migrate-set-capabilities", capabilities=CAPS)
    dst.qmp.cmd("migrate-incoming", uri=uri)
    src.qmp.cmd("migrate-set-capabilities", capabilities=CAPS)
    params = {"downtime-limit": DOWNTIME_MS}
    if bandwidth:
        params["max-bandwidth"] = bandwidth
    src.qmp.cmd("migrate-set-parameters", **params)
    src.qmp.cmd("migrate", uri=uri)


def wait_migration(src, timeout=600.0, until=("completed", "failed",
                                               "cancelled"), quiet=False,
                   relax_after=None):
    """
    Poll query-migrate until its status is one of @until.  QEMU marks all
    guest RAM dirty on every pass while a VFIO device offers no dirty
    tracking, so on a slow or busy machine a pre-copy may never fit the
    downtime limit: after @relax_after seconds still active, the limit is
    raised to RELAXED_DOWNTIME_MS once (and said so), as an operator would.
    """
    deadline = time.monotonic() + timeout
    relax_at = time.monotonic() + relax_after if relax_after else None
    last = 0.0
    while True:
        info = src.qmp.cmd("query-migrate")
        st = info.get("status", "none")
        if relax_at and st == "active" and time.monotonic() > relax_at:
            relax_at = None
            log("not converged after %ds: downtime-limit %d ms" %
                (relax_after, RELAXED_DOWNTIME_MS))
            src.qmp.cmd("migrate-set-parameters",
                        **{"downtime-limit": RELAXED_DOWNTIME_MS})
        if not quiet and time.monotonic() - last >= 1.0:
            last = time.monotonic()
            ram = info.get("ram", {})
            vfio = info.get("vfio", {})
            log("migration %s: ram %d KiB, vfio %d KiB" %
                (st, ram.get("transferred", 0) >> 10,
                 vfio.get("transferred", 0) >> 10))
        if st in until:
            return info
        if time.monotonic() > deadline:
            raise QMPError("migration still %s after %ds" % (st, timeout))
        time.sleep(0.1)


def wait_running(vm, vf, timeout=60.0):
    """Wait until the destination VM runs and its VF left RESUMING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if vm.status() == "running" and vfio_status(vf)["state"] == "RUNNING":
            return True
        time.sleep(0.05)
    return False


def migrate(a, b, vm_a):
    """
    Migrate vm_a (owning VF a) to a new VM on VF b; return (info, vm_b).
    VF b does not step on its own until the caller compared it with VF a
    (the source VF is in STOP after the switchover and keeps its state).
    """
    sim_write(b, "free_run", 0)
    vm_b = VM("dst-" + b, b, incoming=True)
    start_migration(vm_a, vm_b)
    info = wait_migration(vm_a, relax_after=RELAX_AFTER_S)
    if info.get("status") == "completed" and not wait_running(vm_b, b):
        info["status"] = "destination-not-running"
    return info, vm_b


def summary(info, t, da, db):
    st = info.get("status")
    down = info.get("downtime", -1)
    vfio = info.get("vfio", {}).get("transferred", 0)
    log("status %s, total %d ms, downtime %d ms, vfio %d bytes" %
        (st, info.get("total-time", t * 1000), down, vfio))
    log("VF A digest at switchover %s" % da)
    log("VF B digest after resume  %s" % db)
    return "demo: migration %s, downtime %d ms, vfio %d bytes, digests %s" % (
        st, down, vfio, "equal" if da == db else "DIFFER")


def prepare(a, b):
    os.makedirs(WORK, exist_ok=True)
    for vf in (a, b):
        sim_write(vf, "free_run", 1)


def demo(a, b):
    prepare(a, b)
    vm_a = VM("src-" + a, a)
    log("source VM on %s: %s" % (a, vm_a.status()))
    if not steps_advance(a):
        print("demo: VF A does not run")
        return 1
    t = time.monotonic()
    info, vm_b = migrate(a, b, vm_a)
    t = time.monotonic() - t
    da = sim_read(a, "digest")
    db = sim_read(b, "digest")
    line = summary(info, t, da, db)
    ok = info.get("status") == "completed" and da == db
    if ok:
        sim_write(b, "free_run", 1)
        log("destination VM: %s, VF B %s, steps advance: %s" %
            (vm_b.status(), vfio_status(b)["state"], steps_advance(b)))
    vm_a.quit()
    vm_b.quit()
    print(line, flush=True)
    return 0 if ok else 1


class TAP:
    def __init__(self):
        self.n = 0
        self.failed = 0
        print("TAP version 13", flush=True)

    def ok(self, cond, name):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%s %d %s" % ("ok" if cond else "not ok", self.n, name),
              flush=True)
        return cond

    def end(self):
        print("1..%d" % self.n, flush=True)
        return 1 if self.failed else 0


def source_alive(tap, vm, vf, what):
    tap.ok(vm.status() == "running", what + ": source VM still running")
    tap.ok(vfio_status(vf)["state"] == "RUNNING",
           what + ": source VF back in RUNNING")
    tap.ok(steps_advance(vf), what + ": source VF state continues")


def tests(a, b):
    tap = TAP()
    prepare(a, b)

    # 1. A -> B, and 2. back B -> A.
    vm_a = VM("src-" + a, a)
    info, vm_b = migrate(a, b, vm_a)
    da, db = sim_read(a, "digest"), sim_read(b, "digest")
    tap.ok(info.get("status") == "completed", "migrate A->B completes")
    tap.ok(da == db, "A->B: VF B equals VF A at switchover")
    tap.ok(info.get("vfio", {}).get("transferred", 0) > 0,
           "A->B: vfio bytes transferred")
    vm_a.quit()
    sim_write(b, "free_run", 1)
    tap.ok(steps_advance(b), "A->B: VF B runs on the destination")
    info, vm_a = migrate(b, a, vm_b)
    da, db = sim_read(a, "digest"), sim_read(b, "digest")
    tap.ok(info.get("status") == "completed", "migrate back B->A completes")
    tap.ok(da == db, "B->A: VF A equals VF B at switchover")
    vm_b.quit()
    sim_write(a, "free_run", 1)

    # 3. migrate_cancel during pre-copy, then a second migration.
    vm_d = VM("dst-" + b, b, incoming=True)
    pre_before = int(vfio_status(a)["pre_copy_entries"])
    start_migration(vm_a, vm_d, bandwidth=1 << 20)
    wait_migration(vm_a, until=("active",), quiet=True)
    tap.ok(wait_vf_state(a, "PRE_COPY") and
           int(vfio_status(a)["pre_copy_entries"]) == pre_before + 1,
           "cancel: VF A is in PRE_COPY when the cancel comes")
    vm_a.qmp.cmd("migrate_cancel")
    info = wait_migration(vm_a, until=("cancelled", "failed"), quiet=True)
    tap.ok(info.get("status") == "cancelled", "cancel: migration cancelled")
    source_alive(tap, vm_a, a, "cancel")
    vm_d.kill()
    vm_a.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
    info, vm_b = migrate(a, b, vm_a)
    tap.ok(info.get("status") == "completed" and
           sim_read(a, "digest") == sim_read(b, "digest"),
           "cancel: a second migration completes with equal digests")
    sim_write(a, "free_run", 1)
    vm_b.quit()
    vm_a.quit()

    # 4. An incompatible destination fails before switchover.  VF B is
    # another profile, bound as such (a VF whose caps changed under the
    # driver would refuse RESUMING at once, before any stream).
    vm_a = VM("src-" + a, a)
    sim_write(b, "profile", 2)
    rebind(b)
    before = vfio_status(a)
    try:
        info, vm_d = migrate(a, b, vm_a)
        st = info.get("status")
    except QMPError as e:
        st, vm_d = str(e), None
    after = vfio_status(a)
    tap.ok(st == "failed", "incompatible destination: migration fails")
    tap.ok(int(after["pre_copy_entries"]) > int(before["pre_copy_entries"]),
           "incompatible destination: the source started pre-copy")
    tap.ok(after["stop_copy_entries"] == before["stop_copy_entries"] and
           after["migrations_out"] == before["migrations_out"],
           "incompatible destination: source VF never stopped for "
           "switchover")

    source_alive(tap, vm_a, a, "incompatible destination")
    if vm_d:
        vm_d.kill()
    sim_write(b, "profile", 1)
    rebind(b)

    # 5. The destination QEMU dies mid-migration.
    vm_d = VM("dst-" + b, b, incoming=True)
    start_migration(vm_a, vm_d, bandwidth=1 << 20)
    wait_migration(vm_a, until=("active",), quiet=True)
    vm_d.kill()
    info = wait_migration(vm_a, until=("failed", "cancelled", "completed"),
                          quiet=True, timeout=120)
    tap.ok(info.get("status") == "failed", "destination killed: fails")
    source_alive(tap, vm_a, a, "destination killed")
    vm_a.quit()
    return tap.end()


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("demo", "tests"):
        print(__doc__ or "usage: migrate.py demo|tests VF_A VF_B")
        return 2
    os.makedirs(WORK, exist_ok=True)
    if sys.argv[1] == "demo":
        return demo(sys.argv[2], sys.argv[3])
    return tests(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    sys.exit(main())
