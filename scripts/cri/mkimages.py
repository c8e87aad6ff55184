#!/usr/bin/env python3
"""Builds the container images critest pulls, as one OCI image layout.

critest (cri-tools) pulls images from registry.k8s.io and gcr.io, which this
machine cannot reach. This writes stand-ins for each of them, built from
Debian's dynamically linked busybox (hard-linked applets, as in the busybox
image: critest's MaskedPaths test needs `ls` to be its own executable, which a
busybox-static "standalone shell" is not), its glibc libraries, and two small
static programs (tests/cri/images/pause.c, nginx.c, nnp.c).

    mkimages.py --out DIR --busybox-root ROOT --pause BIN --nginx BIN --nnp BIN

ROOT is the busybox .deb extracted with `dpkg -x`. DIR receives an OCI image
layout (oci-layout, index.json, blobs/) whose manifests are named by the
`org.opencontainers.image.ref.name` annotation "imgN", and DIR/images.txt, one
line per image reference to push: "imgN REPOSITORY:TAG" (REPOSITORY without a
registry host). Everything is deterministic (fixed times and owners): the same
inputs give the same digests.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

EPOCH = 0
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LIB_DIR = "/lib/x86_64-linux-gnu"

# The busybox image's /etc/passwd and /etc/group.
PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""

# Applets that critest runs and Debian's busybox lacks, as small scripts.
PGREP = r"""#!/bin/sh
# pgrep NAME: the PIDs of the processes whose name is NAME (stand-in; Debian's
# busybox has no pgrep applet).
[ $# -eq 1 ] || { echo "usage: pgrep NAME" >&2; exit 2; }
found=1
for d in /proc/[0-9]*; do
    read -r comm <"$d/comm" 2>/dev/null || continue
    if [ "$comm" = "$1" ] && [ "${d#/proc/}" != "$$" ]; then
        echo "${d#/proc/}"
        found=0
    fi
done
exit $found
"""
IPCS = r"""#!/bin/sh
# ipcs [-m]: the System V shared memory segments of this IPC namespace, as
# util-linux prints them (stand-in; Debian's busybox has no ipcs applet).
echo ""
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
{
    read -r header
    while read -r key shmid perms size cpid lpid nattch uid rest; do
        printf '0x%08x %-10s %-10s %-10s %-10s %-10s\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
    done
} </proc/sysvipc/shm
echo ""
"""


class Layer:
    """An uncompressed tar being built, entries in the order added."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.seen = set()

    def _info(self, name, type_, mode, **kw):
        ti = tarfile.TarInfo(name.lstrip("/"))
        ti.type = type_
        ti.mode = mode
        ti.mtime = EPOCH
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        for k, v in kw.items():
            setattr(ti, k, v)
        return ti

    def dir(self, path, mode=0o755):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.seen:
                self.seen.add(p)
                m = mode if i == len(parts) else 0o755
                self.tar.addfile(self._info(p + "/", tarfile.DIRTYPE, m))

    def file(self, path, data, mode=0o644):
        self.dir(os.path.dirname(path.strip("/")))
        ti = self._info(path, tarfile.REGTYPE, mode, size=len(data))
        self.tar.addfile(ti, io.BytesIO(data))
        self.seen.add(path.strip("/"))

    def hardlink(self, path, target):
        self.dir(os.path.dirname(path.strip("/")))
        self.tar.addfile(self._info(path, tarfile.LNKTYPE, 0o755, linkname=target.lstrip("/")))

    def symlink(self, path, target):
        self.dir(os.path.dirname(path.strip("/")))
        self.tar.addfile(self._info(path, tarfile.SYMTYPE, 0o777, linkname=target))

    def finish(self):
        self.tar.close()
        raw = self.buf.getvalue()
        gz = io.BytesIO()
        with gzip.GzipFile(fileobj=gz, mode="wb", mtime=EPOCH, compresslevel=6) as g:
            g.write(raw)
        return raw, gz.getvalue()


class Layout:
    def __init__(self, out):
        self.out = out
        self.blobs = os.path.join(out, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        self.manifests = []
        self.refs = []

    def blob(self, data):
        d = hashlib.sha256(data).hexdigest()
        p = os.path.join(self.blobs, d)
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
        return "sha256:" + d, len(data)

    def layer(self, layer):
        raw, gz = layer.finish()
        digest, size = self.blob(gz)
        return {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": size,
        }, "sha256:" + hashlib.sha256(raw).hexdigest()

    def image(self, layers, config, tags, comment):
        """layers: [(descriptor, diff_id)]; tags: ["repo:tag", ...]."""
        cfg = {
            "created": CREATED,
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
            "history": [{"created": CREATED, "created_by": comment}],
        }
        cfg_bytes = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
        cdigest, csize = self.blob(cfg_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cdigest,
                "size": csize,
            },
            "layers": [l for l, _ in layers],
        }
        mbytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        mdigest, msize = self.blob(mbytes)
        name = "img%d" % len(self.manifests)
        self.manifests.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest,
            "size": msize,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": name},
        })
        for t in tags:
            self.refs.append((name, t))
        return mdigest

    def finish(self):
        with open(os.path.join(self.out, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(self.out, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.manifests}, f, indent=1)
        with open(os.path.join(self.out, "images.txt"), "w") as f:
            for name, t in self.refs:
                f.write("%s %s\n" % (name, t))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def busybox_layer(bb_root):
    bb = os.path.join(bb_root, "bin", "busybox")
    applets = subprocess.run([bb, "--list"], check=True, capture_output=True, text=True).stdout.split()
    l = Layer()
    for d, m in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755),
                 ("proc", 0o555), ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777),
                 ("usr/bin", 0o755), ("usr/sbin", 0o755), ("var/run", 0o755),
                 ("var/spool/mail", 0o755), ("var/www", 0o755), (LIB_DIR, 0o755)]:
        l.dir(d, m)
    l.file("bin/busybox", read(bb), 0o755)
    for a in sorted(set(applets)):
        if a != "busybox":
            l.hardlink("bin/" + a, "bin/busybox")
    l.file("bin/pgrep", PGREP.encode(), 0o755)
    l.file("bin/ipcs", IPCS.encode(), 0o755)
    # The glibc busybox links against (Debian's, the same as this machine's).
    libs = subprocess.run(["ldd", bb], check=True, capture_output=True, text=True).stdout
    for line in libs.splitlines():
        parts = line.split()
        path = parts[2] if len(parts) >= 3 and parts[1] == "=>" else parts[0]
        if not path.startswith("/"):
            continue  # linux-vdso
        real = os.path.realpath(path)
        l.file(LIB_DIR + "/" + os.path.basename(path), read(real), 0o755)
    l.symlink("lib64/ld-linux-x86-64.so.2", LIB_DIR + "/ld-linux-x86-64.so.2")
    l.file("etc/passwd", PASSWD.encode())
    l.file("etc/group", GROUP.encode())
    l.file("etc/shadow", b"root:*:10933:0:99999:7:::\n", 0o600)
    l.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")
    return l


def marker_layer(path):
    l = Layer()
    l.file(path, b"")
    return l


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--busybox-root", required=True)
    ap.add_argument("--pause", required=True)
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--nnp", required=True)
    a = ap.parse_args()

    lay = Layout(a.out)
    base = lay.layer(busybox_layer(a.busybox_root))
    sh = {"Env": [PATH_ENV], "Cmd": ["sh"]}

    # registry.k8s.io/e2e-test-images/busybox:1.29-2 — the default test image.
    lay.image([base], sh, ["e2e-test-images/busybox:1.29-2"], "busybox (Debian, dynamic)")

    # Web servers: registry.k8s.io/e2e-test-images/nginx:1.14-2 (port 80) and
    # gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64 (port 12003).
    web = Layer()
    web.file("usr/sbin/nginx", read(a.nginx), 0o755)
    web.file("usr/share/nginx/html/index.html", b"<h1>Welcome to nginx!</h1>\n")
    web = lay.layer(web)
    nginx_cfg = lambda port: {
        "Env": [PATH_ENV, "NGINX_PORT=%d" % port],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "ExposedPorts": {"%d/tcp" % port: {}},
        "StopSignal": "SIGQUIT",
    }
    lay.image([base, web], nginx_cfg(80), ["e2e-test-images/nginx:1.14-2"], "nginx stand-in, port 80")
    lay.image([base, web], nginx_cfg(12003), ["k8s-staging-cri-tools/hostnet-nginx-amd64:latest"],
              "nginx stand-in, port 12003")

    # registry.k8s.io/e2e-test-images/httpd:2.4.39-4: busybox's httpd on port
    # 80; it says "httpd" on stderr (the multi-container log spec looks for it).
    httpd = Layer()
    httpd.file("usr/local/bin/httpd-foreground",
               b"#!/bin/sh\necho 'httpd: busybox httpd on port 80 (tether critest stand-in)' >&2\n"
               b"exec httpd -f -p 80 -h /usr/local/apache2/htdocs\n", 0o755)
    httpd.file("usr/local/apache2/htdocs/index.html", b"<html><body><h1>It works!</h1></body></html>\n")
    lay.image([base, lay.layer(httpd)],
              {"Env": [PATH_ENV], "Cmd": ["httpd-foreground"], "ExposedPorts": {"80/tcp": {}},
               "WorkingDir": "/usr/local/apache2", "StopSignal": "SIGWINCH"},
              ["e2e-test-images/httpd:2.4.39-4"], "httpd stand-in")

    # registry.k8s.io/e2e-test-images/nonewprivs:1.3: a setuid-root program
    # printing its effective uid.
    nnp = Layer()
    nnp.file("usr/local/bin/nnp", read(a.nnp), 0o4755)
    lay.image([base, lay.layer(nnp)], {"Env": [PATH_ENV], "Cmd": ["/usr/local/bin/nnp"]},
              ["e2e-test-images/nonewprivs:1.3"], "nonewprivs")

    # gcr.io/k8s-staging-cri-tools/test-image-*: busybox plus a marker file
    # named after the image (upstream's images/image-test Dockerfile).
    for name in ["test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"]:
        lay.image([base, lay.layer(marker_layer(name))], sh,
                  ["k8s-staging-cri-tools/%s:latest" % name], "ADD " + name)
    lay.image([base, lay.layer(marker_layer("same-image"))], sh,
              ["k8s-staging-cri-tools/test-image-tags:%d" % i for i in (1, 2, 3)], "ADD same-image")
    for tag in ["test", "all"]:
        lay.image([base, lay.layer(marker_layer(tag))], sh,
                  ["k8s-staging-cri-tools/test-image-tag:" + tag], "ADD " + tag)

    # Images with a USER (upstream's images/image-user).
    for name, user in [("test-image-user-uid", "1002"), ("test-image-user-username", "www-data"),
                       ("test-image-user-uid-group", "1003:1004"),
                       ("test-image-user-username-group", "www-data:1004")]:
        lay.image([base], dict(sh, User=user), ["k8s-staging-cri-tools/%s:latest" % name], "USER " + user)

    # default-user (uid 1000) in group-defined-in-image (gid 50000), USER 1000
    # (upstream's images/image-predefined-group).
    grp = Layer()
    grp.file("etc/passwd", (PASSWD + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n").encode())
    grp.file("etc/group", (GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n").encode())
    grp.file("etc/shadow", b"root:*:10933:0:99999:7:::\ndefault-user:!:19000:0:99999:7:::\n", 0o600)
    grp.dir("home/default-user")
    lay.image([base, lay.layer(grp)], dict(sh, User="1000"),
              ["k8s-staging-cri-tools/test-image-predefined-group:latest"], "adduser default-user; USER 1000")

    # The pod sandbox image: only the static pause program.
    p = Layer()
    p.file("pause", read(a.pause), 0o755)
    lay.image([lay.layer(p)], {"Env": [PATH_ENV], "Entrypoint": ["/pause"], "User": "65535:65535"},
              ["pause:3.10"], "pause (tether critest)")

    lay.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
