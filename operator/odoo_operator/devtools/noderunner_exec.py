"""The container side of the local node runner (noderunner.py): images, argv, pod network, exec.

- `resolve_image` is the image table: what an image reference brings (ENTRYPOINT, CMD, env, user,
  working dir, files) on this machine, or an `ImagePullError` when the machine cannot provide it.
- `container_argv` applies Kubernetes' command/args rules to an image; `expand` its `$(VAR)` rule.
- `ensure_bridge`, `create_pod_network`, `delete_pod_network`: a host bridge, one network namespace
  and veth pair per pod.
- `python -m odoo_operator.devtools.noderunner_exec PLAN.json` is the helper the runner starts for each
  container: it joins the container's cgroup and network namespace, makes a private mount namespace
  (what `unshare --mount --propagation private` does, through the system calls), bind-mounts the
  image's files and the pod's volumes at their paths, drops to the container's user and execs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
ODOO_IMAGE_FILES = REPO_ROOT / "hack" / "odoo-image"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ODOO_UID = 101
OPERATOR_UID = 65532

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38


class ImagePullError(Exception):
    """The image cannot be had on this machine: the Pod waits with ErrImagePull/ImagePullBackOff."""


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass
class Image:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    workdir: str = "/"
    files: list[Mount] = field(default_factory=list)  # the image's own files, mounted under the volumes
    volumes: list[str] = field(default_factory=list)  # VOLUME paths: a fresh dir each, unless a volume is mounted
    host_network: bool = False  # needs the API server on 127.0.0.1


@dataclass(frozen=True)
class ImageSettings:
    odoo_homes: Mapping[str, Path]  # series -> folder with src/odoo-bin and venv/bin/python
    operator_image: str
    images_dir: Path  # where generated image files (the `odoo` and `python3` commands) go


def _repository_and_tag(ref: str) -> tuple[str, str]:
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    repository, _, tag = last.partition(":")
    return repository, tag or ("@" + digest if digest else "latest")


def resolve_image(ref: str, settings: ImageSettings) -> Image:
    """The image table. `odoo:<series>` (any registry): the official image's ENTRYPOINT, CMD, env and
    user, with Odoo from the series' folder; the operator's image: its Dockerfile's, with the project's
    own Python; any other image: the host's commands as they are, as root."""
    if ref == settings.operator_image:
        venv_bin = str(Path(sys.executable).parent)
        return Image(
            entrypoint=["odoo-db-operator"], cmd=[], uid=OPERATOR_UID, gid=OPERATOR_UID, workdir="/tmp",
            env={"PATH": f"{venv_bin}:/usr/lib/postgresql/15/bin:{DEFAULT_PATH}", "HOME": "/tmp", "TMPDIR": "/tmp",
                 "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
            volumes=["/tmp"], host_network=True,
        )
    repository, tag = _repository_and_tag(ref)
    if repository != "odoo":
        return Image(entrypoint=[], cmd=[], env={"PATH": DEFAULT_PATH}, uid=0, gid=0)
    home = settings.odoo_homes.get(tag)
    if home is None or not (Path(home) / "src" / "odoo-bin").exists():
        available = ", ".join(sorted(series for series, folder in settings.odoo_homes.items()
                                     if (Path(folder) / "src" / "odoo-bin").exists()))
        raise ImagePullError(f'image "{ref}" is not available on this node: Odoo series here: {available or "none"}')
    bin_dir = _odoo_image_bin(Path(home), tag, settings.images_dir)
    return Image(
        entrypoint=["/entrypoint.sh"], cmd=["odoo"], uid=ODOO_UID, gid=ODOO_UID,
        env={"PATH": f"{bin_dir}:{DEFAULT_PATH}", "LANG": "C.UTF-8", "ODOO_VERSION": tag,
             "ODOO_RC": "/etc/odoo/odoo.conf", "HOME": "/var/lib/odoo"},
        files=[Mount(str(ODOO_IMAGE_FILES / "entrypoint.sh"), "/entrypoint.sh", True),
               Mount(str(ODOO_IMAGE_FILES / "wait-for-psql.py"), "/usr/local/bin/wait-for-psql.py", True)],
        volumes=["/etc/odoo", "/var/lib/odoo", "/mnt/extra-addons"],
    )


def _odoo_image_bin(home: Path, series: str, images_dir: Path) -> Path:
    """`odoo` (the image's /usr/bin/odoo) and `python3` (the image's Python, which has Odoo's
    libraries: wait-for-psql.py needs psycopg2) for one series."""
    bin_dir = images_dir / f"odoo-{series}" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = home / "venv" / "bin" / "python"
    for name, body in (("odoo", f'exec {python} {home / "src" / "odoo-bin"} "$@"\n'),
                       ("python3", f'exec {python} "$@"\n')):
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    for directory in (images_dir, bin_dir.parent, bin_dir):
        directory.chmod(0o755)  # the container's user runs them by their host path
    return bin_dir


def odoo_image_conf(home: Path) -> str:
    """The image's /etc/odoo/odoo.conf. The image's Odoo (a Debian package) keeps every standard
    addon inside the `odoo` package; a source tree keeps most in src/addons, listed here."""
    text = (ODOO_IMAGE_FILES / "odoo.conf").read_text()
    return text.replace("addons_path = /mnt/extra-addons", f"addons_path = /mnt/extra-addons,{home / 'src' / 'addons'}")


def exposure_mounts(executables: list[Path], staging: Path) -> list[dict[str, Any]]:
    """Bind mounts that let a container's user run interpreters living under a folder it may not
    enter (a pyenv Python under /root, 0700): that folder is masked, in the container only, by a
    0755 one that holds just the interpreters' subtree."""
    children: list[tuple[Path, str]] = []
    for executable in executables:
        real = executable.resolve()
        for ancestor in reversed(real.parents):
            if ancestor != Path("/") and not ancestor.stat().st_mode & 0o001:
                children.append((ancestor, real.relative_to(ancestor).parts[0]))
                break
    binds, masks = [], []
    for ancestor, child in dict.fromkeys(children):
        stage = staging / ancestor.as_posix().strip("/").replace("/", "_")
        (stage / child).mkdir(parents=True, exist_ok=True)
        stage.chmod(0o755)
        binds.append({"source": str(ancestor / child), "target": str(stage / child), "readOnly": True})
        mask = {"source": str(stage), "target": str(ancestor), "readOnly": True}
        if mask not in masks:
            masks.append(mask)
    return binds + masks


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` escapes, the rest stays."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)


def container_argv(container: Mapping[str, object], image: Image, env: Mapping[str, str]) -> list[str]:
    """`command` replaces ENTRYPOINT (and CMD is then ignored); `args` replaces CMD."""
    command = [expand(str(a), env) for a in container.get("command") or []]  # type: ignore[attr-defined]
    args = [expand(str(a), env) for a in container.get("args") or []]  # type: ignore[attr-defined]
    if command:
        return command + args
    return image.entrypoint + (args if container.get("args") else image.cmd)


# ---- pod network ------------------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def gateway_of(cidr: str) -> str:
    return str(next(ipaddress.ip_network(cidr).hosts()))


def ensure_bridge(name: str, cidr: str) -> str:
    """The host bridge of the pod network, with the network's first address; returns that address."""
    network = ipaddress.ip_network(cidr)
    gateway = gateway_of(cidr)
    if _ip("link", "show", name, check=False).returncode != 0:
        _ip("link", "add", name, "type", "bridge")
    if gateway not in _ip("-o", "addr", "show", "dev", name).stdout:
        _ip("addr", "add", f"{gateway}/{network.prefixlen}", "dev", name)
    _ip("link", "set", name, "up")
    return gateway


def delete_bridge(name: str) -> None:
    _ip("link", "del", name, check=False)


def claim_bridge(prefix: str = "odoobr", base: str = "10.89") -> tuple[str, str]:
    """Creates the first bridge `<prefix><k>` that does not exist yet, whose /24 `<base>.<k>.0` no
    interface uses; returns its name and CIDR. Creating the link is the claim: clusters started at
    the same moment get different bridges."""
    for k in range(1, 250):
        name, cidr = f"{prefix}{k}", f"{base}.{k}.0/24"
        if f" {base}.{k}." in _ip("-o", "addr").stdout:
            continue
        if _ip("link", "add", name, "type", "bridge", check=False).returncode == 0:
            ensure_bridge(name, cidr)
            return name, cidr
    raise RuntimeError("no free pod network left")


CGROUP_ROOT = Path("/sys/fs/cgroup/unified")


def runner_cgroup(bridge: str) -> Path:
    return CGROUP_ROOT / f"odoo-runner-{bridge}"


def kill_cgroup(path: Path) -> None:
    """Every process of a container (its "PID namespace" ends with its main process), then the cgroup."""
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            path.rmdir()
            return
        time.sleep(0.05)


def remove_leftovers(bridge: str, with_bridge: bool = True) -> None:
    """What a runner of this bridge leaves when killed before its own clean-up: processes, cgroups,
    network namespaces (their veths go with them), and the bridge."""
    cgroup = runner_cgroup(bridge)
    if cgroup.is_dir():
        for child in cgroup.iterdir():
            if child.is_dir():
                kill_cgroup(child)
        with contextlib.suppress(OSError):
            cgroup.rmdir()
    with contextlib.suppress(FileNotFoundError):
        for netns in os.listdir("/run/netns"):
            if netns.startswith(f"{bridge}-"):
                _ip("netns", "del", netns, check=False)
    if with_bridge:
        delete_bridge(bridge)


def create_pod_network(netns: str, veth: str, bridge: str, address: str, prefixlen: int, gateway: str) -> None:
    delete_pod_network(netns, veth)
    _ip("netns", "add", netns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _ip("link", "set", veth, "master", bridge, "up")
    _ip("-n", netns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0")
    _ip("-n", netns, "link", "set", "eth0", "up")
    _ip("-n", netns, "link", "set", "lo", "up")
    _ip("-n", netns, "route", "add", "default", "via", gateway)


def delete_pod_network(netns: str, veth: str) -> None:
    _ip("link", "del", veth, check=False)
    _ip("netns", "del", netns, check=False)


# ---- the exec helper ---------------------------------------------------------------------------
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount_bind(libc: ctypes.CDLL, source: str, target: str, read_only: bool) -> None:
    target_path = Path(target)
    if Path(source).is_dir():
        target_path.mkdir(parents=True, exist_ok=True)
    elif not target_path.exists():
        target_path.parent.mkdir(parents=True, exist_ok=True)
        target_path.touch()
    _check(libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None), f"bind {source} {target}")
    if read_only:
        _check(libc.mount(None, target.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None), f"read-only {target}")


def run_plan(plan: dict[str, Any]) -> None:
    """Runs in the helper process, as root, then execs the container's command."""
    libc = _libc()
    cgroup = plan.get("cgroup")
    if cgroup:
        with contextlib.suppress(OSError):
            Path(str(cgroup), "cgroup.procs").write_text(str(os.getpid()))
    netns = plan.get("netns")
    if netns:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        _check(libc.setns(fd, CLONE_NEWNET), "setns")
        os.close(fd)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare mount and UTS namespaces")
    hostname = str(plan.get("hostname") or "")
    if hostname:
        _check(libc.sethostname(hostname.encode(), len(hostname.encode())), "sethostname")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    # Parents before children, as container runtimes order them; every source is opened first, as a
    # mount at /tmp (an image VOLUME) would otherwise hide sources that live under /tmp.
    mounts = list(plan.get("premounts") or []) + sorted(plan["mounts"], key=lambda m: len(Path(m["target"]).parts))
    sources = [os.open(m["source"], os.O_PATH) for m in mounts]
    for mount, fd in zip(mounts, sources, strict=True):
        _mount_bind(libc, f"/proc/self/fd/{fd}", mount["target"], bool(mount.get("readOnly")))
        os.close(fd)
    uid, gid = int(plan["uid"]), int(plan["gid"])
    workdir = str(plan.get("workdir") or "/")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    os.setgroups([int(g) for g in plan.get("groups") or []])
    os.setgid(gid)
    os.setuid(uid)
    if plan.get("noNewPrivs"):
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by setuid: set it as the container's user
    argv = [str(a) for a in plan["argv"]]
    env = {str(k): str(v) for k, v in plan["env"].items()}
    executable = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", DEFAULT_PATH))
    if executable is None:
        print(f'exec: "{argv[0]}": executable file not found in $PATH', file=sys.stderr)
        sys.exit(127)
    os.execve(executable, argv, env)


def main() -> None:
    plan_path = Path(sys.argv[1])
    plan = json.loads(plan_path.read_text())
    plan_path.unlink(missing_ok=True)
    try:
        run_plan(plan)
    except OSError as exc:
        print(f"container start failed: {exc}", file=sys.stderr)
        sys.exit(128)


if __name__ == "__main__":
    main()
