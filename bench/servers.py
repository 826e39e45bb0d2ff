"""The benchmark's own MongoDB-wire servers, and what /proc says about a server process.

Why private servers: the FerretDB and mongo-java-server of `make services` are shared with every
test run on the machine, so their CPU time and peak memory would include other people's queries.
The benchmark starts its OWN processes from the same binaries (`scripts/services.sh build-*`, the
same builds and flags as `make services`) on free loopback ports, in a temporary folder, measures
them alone, and stops them (by the pid it started) at the end. `--shared-servers` uses the servers
of `make services` instead (pids from .services/*.pid).

Server metrics come from /proc/<pid>: CPU = utime + stime of the whole process (all threads) from
`stat`; peak memory = `VmHWM` of `status` after `echo 5 > clear_refs` reset it to the current RSS
(Linux >= 4.0). Standard library only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / ".services"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Heap of the benchmark's mongo-java-server: its memory backend keeps every document as Java
# objects (~2-3 KB per CDR), so 1,000,000 CDRs need a few GB; the JVM default (1/4 of RAM) is
# machine-dependent, so the benchmark states it.
MJS_HEAP = "-Xmx6g"


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (every thread), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 is fields[0]
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS; False when the kernel or permissions do not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    # A kernel that accepts the write but ignores "5" leaves VmHWM above VmRSS.
    return status_kib(pid, "VmHWM") - status_kib(pid, "VmRSS") <= 1024


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _built(what: str) -> Path:
    """Path of a server build, built once by scripts/services.sh (as `make services` does)."""
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "services.sh"), f"build-{what}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class Server:
    """A MongoDB-wire server process: its URI and pid (private or shared)."""

    name: str
    uri: str
    pid: int
    private: bool
    detail: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)
    folder: Path | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _start(name: str, argv: list[str], port: int, folder: Path, detail: str, seconds: float = 90) -> Server:
    log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    deadline = time.monotonic() + seconds
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} did not start on port {port}: {(folder / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return Server(name, f"mongodb://127.0.0.1:{port}/", process.pid, True, detail, process, folder)


def start_ferretdb() -> Server:
    binary = _built("ferretdb")
    folder = Path(tempfile.mkdtemp(prefix="bench-ferretdb-", dir=SERVICES))
    (folder / "data").mkdir()
    port = free_port()
    argv = [str(binary), "-listen-addr", f"127.0.0.1:{port}", "-sqlite-dir", str(folder / "data")]
    return _start("ferretdb", argv, port, folder, "private process, SQLite backend")


def start_mongo_java_server() -> Server:
    jar = _built("mongo-java-server")
    folder = Path(tempfile.mkdtemp(prefix="bench-mjs-", dir=SERVICES))
    port = free_port()
    argv = ["java", MJS_HEAP, "-jar", str(jar), "--listen-addr", f"127.0.0.1:{port}"]
    return _start("mongo-java-server", argv, port, folder, f"private process, memory backend, JVM {MJS_HEAP}")


def shared(name: str, uri: str, pid_file: str) -> Server:
    """A server of `make services`; it is never stopped by the benchmark."""
    pid = int((SERVICES / pid_file).read_text().strip())
    return Server(name, uri, pid, False, f"shared server of `make services` (pid file .services/{pid_file})")
