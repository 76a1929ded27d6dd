#!/usr/bin/env python3
"""Deterministic single-layer container image archives, without a container daemon.

    oci_image.py build --rootfs DIR --ref REF --out FILE [options]
    oci_image.py ls ARCHIVE_OR_LAYOUT_DIR [--ref TAG]

`build` writes one tar that is at the same time
  * an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`), for
    `skopeo copy oci-archive:FILE ...`, `ctr images import`, `kind load image-archive`,
    `podman load` (`index.json` carries the `io.containerd.image.name` annotation with the
    full reference and `org.opencontainers.image.ref.name` with its tag), and
  * a docker archive (`manifest.json` with `RepoTags`), for `docker load` and
    `skopeo copy docker-archive:FILE ...`;
both point at the same three blobs: one gzip layer, the image config and the OCI manifest.

The layer holds every file, directory and symlink under --rootfs (other file types are refused),
in sorted order, with mtime 0, uid/gid 0 and empty user/group names, except the paths named by
--owner; permission bits are kept as staged. The gzip stream has mtime 0 and no file name. So the
same staged tree, options and Python/zlib versions give the same bytes.

`build` prints one JSON object (sizes in bytes, digests "sha256:...") on stdout. `ls` prints the
layer's entries, one a line: `type mode uid:gid size sha256-or-link path` (for checks).

Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import stat
import sys
import tarfile
import tempfile
from typing import BinaryIO

EPOCH = "1970-01-01T00:00:00Z"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20


class Fail(Exception):
    """An error to print as `oci_image.py: MESSAGE` and exit 1."""


class HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.target.flush()

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_owner(text: str) -> tuple[str, int, int]:
    path, sep, ids = text.partition("=")
    uid, sep2, gid = ids.partition(":")
    if not sep or not sep2 or not uid.isdigit() or not gid.isdigit():
        raise Fail(f"--owner {text!r}: expected PATH=UID:GID, e.g. dataset=65532:65532")
    return path.strip("/"), int(uid), int(gid)


def parse_pair(option: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise Fail(f"{option} {text!r}: expected KEY=VALUE")
    return key, value


def parse_json_list(option: str, text: str | None) -> list[str] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise Fail(f"{option}: not JSON ({e}): {text!r}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Fail(f"{option}: expected a JSON list of strings, got {text!r}")
    return value


def image_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


def split_ref(ref: str) -> tuple[str, str]:
    """`localhost/byzsgd-node:0.1.0` -> (`localhost/byzsgd-node`, `0.1.0`)."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag or not name or not tag:
        raise Fail(f"--ref {ref!r}: expected a fully qualified NAME:TAG, e.g. localhost/x:1.0")
    if "/" not in name:
        raise Fail(
            f"--ref {ref!r}: give a registry host (e.g. localhost/{name}); CRI would otherwise "
            f"rename it docker.io/library/{name}"
        )
    return name, tag


def walk(rootfs: str) -> list[tuple[str, str]]:
    """(archive name, host path) of everything under rootfs, parents before children, sorted."""
    entries = []
    for top, dirs, files in os.walk(rootfs, followlinks=False):
        dirs.sort()
        rel_top = os.path.relpath(top, rootfs)
        for name in dirs + files:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            entries.append((rel, os.path.join(top, name)))
    # os.walk lists a directory's children before its subdirectories' children, so sort by
    # path components: a parent is a prefix of its children and sorts first.
    entries.sort(key=lambda e: e[0].split("/"))
    return entries


def write_layer(rootfs: str, owners: dict[str, tuple[int, int]], out: BinaryIO) -> dict:
    """Writes the gzip layer of rootfs to out; returns digests, sizes and counts."""
    compressed = HashingWriter(out)
    # Level 6 (zlib's default): level 9 takes 5x as long for 1 % less on these binaries.
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6)
    raw = HashingWriter(gz)
    files = content = 0
    seen_owners = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in walk(rootfs):
            st = os.lstat(path)
            info = tarfile.TarInfo(name)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = 0
            info.uid, info.gid = owners.get(name, (0, 0))
            if name in owners:
                seen_owners.add(name)
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                files += 1
                content += st.st_size
            else:
                raise Fail(f"{path}: only regular files, directories and symlinks can go in a layer")
    gz.close()
    missing = sorted(set(owners) - seen_owners)
    if missing:
        raise Fail(f"--owner names paths that are not in the rootfs: {', '.join(missing)}")
    return {
        "diff_id": raw.digest(),
        "layer_bytes": raw.size,
        "layer_digest": compressed.digest(),
        "layer_gz_bytes": compressed.size,
        "files": files,
        "content_bytes": content,
    }


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def build(a: argparse.Namespace) -> dict:
    if not os.path.isdir(a.rootfs):
        raise Fail(f"--rootfs {a.rootfs}: not a directory")
    name, tag = split_ref(a.ref)
    owners = {}
    for text in a.owner:
        path, uid, gid = parse_owner(text)
        owners[path] = (uid, gid)
    labels = dict(parse_pair("--label", t) for t in a.label)
    env = ["PATH=" + a.path] + a.env
    entrypoint = parse_json_list("--entrypoint", a.entrypoint)
    cmd = parse_json_list("--cmd", a.cmd)
    out_dir = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(out_dir):
        raise Fail(f"--out {a.out}: directory {out_dir} does not exist")

    with tempfile.TemporaryFile(dir=out_dir) as layer_file:
        layer = write_layer(a.rootfs, owners, layer_file)

        config: dict = {"User": a.user, "Env": env, "WorkingDir": a.workdir, "Labels": labels}
        if entrypoint is not None:
            config["Entrypoint"] = entrypoint
        if cmd is not None:
            config["Cmd"] = cmd
        image_config = {
            "architecture": a.arch,
            "os": "linux",
            "created": EPOCH,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"]]},
            "history": [{"created": EPOCH, "created_by": a.created_by}],
        }
        config_bytes = canonical_json(image_config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {
                "mediaType": MT_CONFIG,
                "digest": sha256(config_bytes),
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": MT_LAYER,
                    "digest": layer["layer_digest"],
                    "size": layer["layer_gz_bytes"],
                }
            ],
        }
        manifest_bytes = canonical_json(manifest)
        index = {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": sha256(manifest_bytes),
                    "size": len(manifest_bytes),
                    "platform": {"architecture": a.arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": a.ref,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }

        def blob(digest: str) -> str:
            return "blobs/sha256/" + digest.removeprefix("sha256:")

        docker_manifest = [
            {
                "Config": blob(sha256(config_bytes)),
                "RepoTags": [a.ref],
                "Layers": [blob(layer["layer_digest"])],
            }
        ]

        blobs = {
            sha256(config_bytes): io.BytesIO(config_bytes),
            sha256(manifest_bytes): io.BytesIO(manifest_bytes),
        }
        layer_file.seek(0)
        blobs[layer["layer_digest"]] = layer_file
        sizes = {
            sha256(config_bytes): len(config_bytes),
            sha256(manifest_bytes): len(manifest_bytes),
            layer["layer_digest"]: layer["layer_gz_bytes"],
        }

        fd, tmp_out = tempfile.mkstemp(dir=out_dir, prefix=".oci-image-", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as f, tarfile.open(
                fileobj=f, mode="w", format=tarfile.USTAR_FORMAT
            ) as tar:
                add_dir(tar, "blobs/")
                add_dir(tar, "blobs/sha256/")
                for digest in sorted(blobs):
                    info = tarfile.TarInfo(blob(digest))
                    info.size = sizes[digest]
                    info.mode = 0o644
                    info.mtime = 0
                    tar.addfile(info, blobs[digest])
                add_bytes(tar, "index.json", canonical_json(index))
                add_bytes(tar, "manifest.json", canonical_json(docker_manifest))
                add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
            os.chmod(tmp_out, 0o644)
            os.replace(tmp_out, a.out)
        except BaseException:
            if os.path.exists(tmp_out):
                os.unlink(tmp_out)
            raise

    return {
        "ref": a.ref,
        "name": name,
        "tag": tag,
        "archive": os.path.abspath(a.out),
        "archive_bytes": os.path.getsize(a.out),
        "layer_bytes": layer["layer_bytes"],
        "layer_gz_bytes": layer["layer_gz_bytes"],
        "content_bytes": layer["content_bytes"],
        "files": layer["files"],
        "config_digest": sha256(config_bytes),
        "manifest_digest": sha256(manifest_bytes),
        "layer_digest": layer["layer_digest"],
        "diff_id": layer["diff_id"],
    }


def read_layout(path: str, tag: str | None) -> tuple[dict, dict, callable]:
    """(manifest, config, open_blob) of the one image (or the one tagged `tag`) in an OCI
    layout directory or archive."""
    if os.path.isdir(path):

        def read(name: str) -> bytes:
            with open(os.path.join(path, name), "rb") as f:
                return f.read()

        def open_blob(name: str) -> BinaryIO:
            return open(os.path.join(path, name), "rb")

    else:
        tar = tarfile.open(path)

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            if member is None:
                raise Fail(f"{path}: {name} is not a file")
            return member.read()

        def open_blob(name: str) -> BinaryIO:
            return tar.extractfile(name)

    index = json.loads(read("index.json"))
    manifests = index["manifests"]
    if tag is not None:
        manifests = [
            m for m in manifests
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
        ]
    if len(manifests) != 1:
        raise Fail(f"{path}: expected one image{' tagged ' + tag if tag else ''}, found {len(manifests)}")

    def blob_path(digest: str) -> str:
        return "blobs/sha256/" + digest.removeprefix("sha256:")

    manifest = json.loads(read(blob_path(manifests[0]["digest"])))
    config = json.loads(read(blob_path(manifest["config"]["digest"])))
    return manifest, config, lambda digest: open_blob(blob_path(digest))


def ls(a: argparse.Namespace) -> None:
    manifest, _, open_blob = read_layout(a.image, a.ref)
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=open_blob(layer["digest"]), mode="r|*") as tar:
            for m in tar:
                name = m.name.removeprefix("./").rstrip("/")
                if not name or name == ".":
                    continue
                if m.isdir():
                    kind, what = "d", "-"
                elif m.issym():
                    kind, what = "l", m.linkname
                elif m.isfile():
                    kind = "f"
                    h = hashlib.sha256()
                    f = tar.extractfile(m)
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                    what = h.hexdigest()
                else:
                    kind, what = m.type.decode(errors="replace"), m.linkname or "-"
                print(f"{kind} {m.mode & 0o7777:04o} {m.uid}:{m.gid} {m.size} {what} {name}")


def main() -> int:
    p = argparse.ArgumentParser(
        prog="oci_image.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write an image archive from a staged root file system")
    b.add_argument("--rootfs", required=True, help="staged root file system (a directory)")
    b.add_argument("--ref", required=True, help="fully qualified NAME:TAG, e.g. localhost/x:0.1.0")
    b.add_argument("--out", required=True, help="archive to write (replaced atomically)")
    b.add_argument("--owner", action="append", default=[], metavar="PATH=UID:GID",
                   help="owner of one layer path (relative to the rootfs); default 0:0")
    b.add_argument("--entrypoint", help="JSON list, e.g. '[\"/usr/local/bin/x\"]'")
    b.add_argument("--cmd", help="JSON list")
    b.add_argument("--path", default="/usr/local/bin:/usr/bin:/bin", help="PATH of the image")
    b.add_argument("--env", action="append", default=[], metavar="K=V", help="more Env entries")
    b.add_argument("--workdir", default="/")
    b.add_argument("--user", default="", help="e.g. 65532:65532")
    b.add_argument("--label", action="append", default=[], metavar="K=V")
    b.add_argument("--arch", default=image_arch(), help="config architecture (default: this machine's)")
    b.add_argument("--created-by", default="scripts/lib/oci_image.py", help="history entry text")
    l = sub.add_parser("ls", help="list the layer entries of an OCI layout (directory or archive)")
    l.add_argument("image")
    l.add_argument("--ref", help="tag (org.opencontainers.image.ref.name) when several images")
    a = p.parse_args()
    try:
        if a.command == "build":
            print(json.dumps(build(a), sort_keys=True))
        else:
            ls(a)
    except Fail as e:
        print(f"oci_image.py: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"oci_image.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
