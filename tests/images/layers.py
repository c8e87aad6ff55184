#!/usr/bin/env python3
"""Writes an OCI image archive (for `ctr images import`) with many layers.

    layers.py --out FILE --layers N --name REF

Layer 1 holds Debian's static busybox as /bin/busybox and /bin/sh; layer K
(2..N) adds the file /layers/K holding "K". So `ls /layers | wc -l` in the
container gives N-1, and each layer differs from every other. Layers are
uncompressed tars with fixed times and owners: the same arguments give the
same digests. REF goes in the index's io.containerd.image.name annotation,
which is the name ctr gives the image.
"""
import argparse
import hashlib
import io
import json
import tarfile

EPOCH = 0


def add_file(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = EPOCH
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = EPOCH
    tar.addfile(info)


def add_link(tar, name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mtime = EPOCH
    tar.addfile(info)


def layer(build):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--busybox", default="/bin/busybox")
    a = ap.parse_args()
    with open(a.busybox, "rb") as f:
        busybox = f.read()

    def base(tar):
        add_dir(tar, "bin")
        add_file(tar, "bin/busybox", busybox, 0o755)
        add_link(tar, "bin/sh", "busybox")
        add_dir(tar, "layers")

    layers = [layer(base)]
    for k in range(2, a.layers + 1):
        layers.append(layer(lambda tar, k=k: add_file(tar, f"layers/{k}", f"{k}\n".encode())))

    blobs = {}
    descs = []
    for data in layers:
        d = digest(data)
        blobs[d] = data
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(data)})
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in descs]},
    }, sort_keys=True).encode()
    blobs[digest(config)] = config
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": descs,
    }, sort_keys=True).encode()
    blobs[digest(manifest)] = manifest
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(manifest),
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": a.name,
                            "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1]},
        }],
    }, sort_keys=True).encode()

    with tarfile.open(a.out, "w", format=tarfile.GNU_FORMAT) as tar:
        add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_file(tar, "index.json", index)
        add_dir(tar, "blobs")
        add_dir(tar, "blobs/sha256")
        for d, data in sorted(blobs.items()):
            add_file(tar, "blobs/sha256/" + d.split(":", 1)[1], data)


if __name__ == "__main__":
    main()
