#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/seed-*): hand-encoded
protobuf and text inputs of the kinds containerd sends, plus edge cases.
Run from anywhere; it rewrites the seed-* files only (the fuzzer's own finds
kept in the corpus have other names)."""
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    """One protobuf field: bytes/str/message as length-delimited, int as varint."""
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def msg(*fields):
    return b"".join(field(n, v) for n, v in fields)


def any_(type_url, value):
    return msg((1, type_url), (2, value))


runc_opts = msg((6, "runc"), (7, "/run/containerd/runc"), (3, "/tether-shims"), (9, 1))
create = msg(
    (1, "c1"), (2, "/run/containerd/io.containerd.runtime.v2.task/default/c1"),
    (3, msg((1, "overlay"), (2, "overlay"), (4, "lowerdir=/l1:/l2"), (4, "upperdir=/u"), (4, "workdir=/w"))),
    (5, "/run/fifo/c1-stdin"), (6, "file:///var/log/c1.log"), (7, "/run/fifo/c1-stderr"),
    (10, any_("containerd.runc.v1.Options", runc_opts)),
)
execp = msg((1, "c1"), (2, "e1"), (3, 1), (5, "binary:///usr/bin/logger?tag=x&v"),
            (7, any_("types.containerd.io/opencontainers/runtime-spec/1/Process",
                     json.dumps({"args": ["/bin/sh"], "cwd": "/", "terminal": True}))))
update = msg((1, "c1"), (2, any_("types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                                  json.dumps({"memory": {"limit": 1 << 26}, "pids": {"limit": -1}}))))
kill = msg((1, "c1"), (2, "e1"), (3, 9), (4, 1))
checkpoint = msg((1, "c1"), (2, "/var/lib/cp"))
resize = msg((1, "c1"), (2, "e1"), (3, 80), (4, 24))
start = msg((1, "c1"), (2, "../etc"))
delete = msg((1, "c1"))


def frame(stream, kind, payload, flags=0):
    return struct.pack(">IIBB", len(payload), stream, kind, flags) + payload


request = msg((1, "containerd.task.v2.Task"), (2, "State"), (3, msg((1, "c1"))), (4, 10**9))
params = msg(
    (1, "c1"), (2, "default"), (3, -4 & 0xFFFFFFFFFFFFFFFF), (4, "v2.3.7"),
    (5, "/run/containerd/containerd.sock.ttrpc"), (6, "/run/containerd/containerd.sock"),
    (7, "/usr/bin/containerd"), (8, msg((1, any_("containerd.runc.v1.Options", runc_opts)))),
    (9, "/run/containerd/s"),
)
state_v1 = {
    "version": 1, "tether": "0.1.0", "upgrades": 2, "listener": 3,
    "conns": [{"fd": 7, "pending": [["Wait", [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]]]}],
    "events": [], "early_exits": [{"pid": 9, "status": 137, "at": {"secs": 5, "nanos": 0}}],
    "containers": [],
}
state_dup = dict(state_v1, conns=[{"fd": 3, "pending": []}])

seeds = {
    "ids": [b"c1", b"abc-def.ghi_1", b"..", b"-rf", b"a/b", b"x" * 77, b"", b"a..b", b"k8s_POD_x-1"],
    "flags": [
        b"\0".join([b"-namespace", b"default", b"-id", b"c1", b"-address", b"/run/containerd/containerd.sock",
                    b"-publish-binary", b"/usr/bin/containerd", b"start"]),
        b"--debug=true\0-bundle=/b\0delete", b"-v", b"-namespace", b"-info\0-debug=maybe", b"--\0-"],
    "runtime_options": [b"\0" + any_("containerd.runc.v1.Options", runc_opts),
                        b"\0" + any_("containerd.linux.runc.RuncOptions", msg((1, "runc"))),
                        b"\x01BinaryName = \"runc\"\nSystemdCgroup = true\nIoUid = 1000\n",
                        b"\x01ConfigPath = 3\n[[x]]", b"\0"],
    "bootstrap": [params, any_("containerd.runc.v1.Options", runc_opts), b"\xff\xff", msg((1, "c1"), (2, "default"), (9, "relative"))],
    "mount_options": [b"ro,bind,rprivate,lowerdir=/a:/b,upperdir=/u", b"defaults", b"", b"rw,,noexec,rslave,remount"],
    "log_uri": [b"file:///var/log/x.log", b"binary:///usr/bin/logger?a=b&c", b"fifo:///x", b"/run/fifo",
                b"file://rel", b"binary:///x?%zz", b"file:///%E2%82%AC", b"file:///%"],
    "ttrpc_frames": [frame(1, 1, request), frame(3, 1, request) + frame(5, 1, b"\x0a"),
                     b"\xff\xff\xff\xff\0\0\0\1\1\0", frame(1, 9, b"garbage")[:14]],
    "task_request": [b"\0" + create, b"\x01" + execp, b"\x02" + update, b"\x03" + kill, b"\x04" + checkpoint,
                     b"\x05" + resize, b"\x06" + start, b"\x07" + delete],
    "upgrade_state": [json.dumps(state_v1).encode(), json.dumps(state_dup).encode(),
                      json.dumps(dict(state_v1, version=2)).encode(), b"{}"],
}

for target, items in seeds.items():
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, data in enumerate(items):
        with open(os.path.join(d, f"seed-{i:02d}"), "wb") as f:
            f.write(data)
