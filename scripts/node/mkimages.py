#!/usr/bin/env python3
"""Builds stand-ins for the images Kubernetes' node conformance specs pull.

The [NodeConformance] specs of test/e2e_node (k8s.io/kubernetes v1.34.4) pull
from registry.k8s.io, which this machine cannot reach. This writes, as one OCI
image layout in the format of scripts/cri/mkimages.py (whose busybox base
layer, from Debian's busybox and its glibc, it reuses):

  e2e-test-images/busybox:1.37.0-1   busybox + an nmeter stand-in
                                     (tests/node/images/nmeter.c: the specs'
                                     `nmeter -d0 '%3t' | head -n1`)
  e2e-test-images/agnhost:2.56       the real agnhost (built at v1.34.4),
                                     /agnhost-2, /localhost.crt and .key, the
                                     busybox shell, Debian's curl with its
                                     libraries, a UDP-capable nc
                                     (tests/node/images/nc.c), nmeter, user
                                     1000 user-defined-in-image in group 50000
  e2e-test-images/nonewprivs:1.3     the real nnp (test/images/nonewprivs),
                                     setuid root
  e2e-test-images/nginx:1.14-4       busybox httpd on port 80
  e2e-test-images/httpd:2.4.38-4     busybox httpd on port 80
  e2e-test-images/nonroot:1.4        busybox, USER 1234
  pause:3.10.1                       the static pause of tests/cri/images

    mkimages.py --out DIR --busybox-root ROOT --agnhost BIN --nnp BIN
                --nmeter BIN --nc BIN --pause BIN --porter DIR

ROOT is the busybox .deb extracted with `dpkg -x`; DIR/images.txt lists
"imgN REPOSITORY:TAG" lines as scripts/cri/mkimages.py does; --porter is
test/images/agnhost/porter of the Kubernetes module (localhost.crt, .key).
The images deliberately do not include the references the specs expect to
fail to pull (invalid.registry.k8s.io, gcr.io/authenticated-image-pulling,
docker.io/non-existing-repo).
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cri"))
import mkimages as cri  # noqa: E402


def libs_of(binary):
    """The absolute paths of the shared libraries `binary` loads (ldd)."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if len(parts) >= 3 and parts[1] == "=>" else parts[0]
        if path.startswith("/"):
            paths.append(path)
    return paths


def main():
    ap = argparse.ArgumentParser()
    for opt in ("out", "busybox-root", "agnhost", "nnp", "nmeter", "nc", "pause", "porter"):
        ap.add_argument("--" + opt, required=True)
    a = ap.parse_args()

    lay = cri.Layout(a.out)
    base = lay.layer(cri.busybox_layer(a.busybox_root))
    env = [cri.PATH_ENV]

    tools = cri.Layer()
    tools.file("usr/local/bin/nmeter", cri.read(a.nmeter), 0o755)
    tools = lay.layer(tools)

    # registry.k8s.io/e2e-test-images/busybox:1.37.0-1, the default test image.
    lay.image([base, tools], {"Env": env, "Cmd": ["sh"]}, ["e2e-test-images/busybox:1.37.0-1"],
              "busybox (Debian) + nmeter stand-in")

    # agnhost: the real binary, plus what the specs exec in it.
    ag = cri.Layer()
    ag.file("agnhost", cri.read(a.agnhost), 0o755)
    ag.symlink("agnhost-2", "agnhost")
    ag.file("localhost.crt", cri.read(os.path.join(a.porter, "localhost.crt")), 0o644)
    ag.file("localhost.key", cri.read(os.path.join(a.porter, "localhost.key")), 0o644)
    ag.dir("uploads")
    ag.file("usr/local/bin/nc", cri.read(a.nc), 0o755)
    ag.file("usr/bin/curl", cri.read("/usr/bin/curl"), 0o755)
    for lib in libs_of("/usr/bin/curl"):
        ag.file(cri.LIB_DIR + "/" + os.path.basename(lib), cri.read(os.path.realpath(lib)), 0o755)
    ag.file("etc/passwd", (cri.PASSWD + "user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n").encode())
    ag.file("etc/group", (cri.GROUP + "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n").encode())
    ag.dir("home/user-defined-in-image")
    lay.image([base, tools, lay.layer(ag)],
              {"Env": env, "Entrypoint": ["/agnhost"], "Cmd": ["pause"],
               "ExposedPorts": {"%d/tcp" % p: {} for p in (80, 8080, 8081, 9376, 5000)}},
              ["e2e-test-images/agnhost:2.56"], "agnhost (real binary) stand-in")

    # nonewprivs: the real nnp, setuid root.
    nnp = cri.Layer()
    nnp.file("usr/local/bin/nnp", cri.read(a.nnp), 0o4755)
    lay.image([base, lay.layer(nnp)], {"Env": env, "Cmd": ["nnp"]}, ["e2e-test-images/nonewprivs:1.3"],
              "nonewprivs (real nnp)")

    # Web servers on port 80: busybox httpd in the foreground.
    web = cri.Layer()
    web.file("usr/share/nginx/html/index.html", b"<h1>Welcome to nginx!</h1>\n")
    web.file("usr/local/apache2/htdocs/index.html", b"<html><body><h1>It works!</h1></body></html>\n")
    web = lay.layer(web)
    lay.image([base, web], {"Env": env, "Cmd": ["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"],
                            "ExposedPorts": {"80/tcp": {}}},
              ["e2e-test-images/nginx:1.14-4"], "nginx stand-in: busybox httpd")
    lay.image([base, web], {"Env": env, "Cmd": ["httpd", "-f", "-p", "80", "-h", "/usr/local/apache2/htdocs"],
                            "ExposedPorts": {"80/tcp": {}}},
              ["e2e-test-images/httpd:2.4.38-4"], "httpd stand-in: busybox httpd")

    # nonroot: USER 1234 (upstream's test/images/nonroot).
    lay.image([base], {"Env": env, "Cmd": ["sh"], "User": "1234"}, ["e2e-test-images/nonroot:1.4"],
              "nonroot stand-in")

    p = cri.Layer()
    p.file("pause", cri.read(a.pause), 0o755)
    lay.image([lay.layer(p)], {"Env": env, "Entrypoint": ["/pause"], "User": "65535:65535"},
              ["pause:3.10.1"], "pause (tether node conformance)")

    lay.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
