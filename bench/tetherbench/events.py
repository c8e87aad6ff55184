"""`ctr events` as a stream of time-stamped lines (B6, B6b)."""

import datetime
import json
import re
import subprocess
import threading
import time


class EventStream:
    """`ctr events`, read line by line; each line stamped on arrival."""

    def __init__(self, bench, impl):
        self.ns = impl.ns
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(bench.ctr_cmd(impl, "events"), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            mono, wall = time.monotonic(), time.time()
            with self.lock:
                self.lines.append((mono, wall, raw.decode(errors="replace").rstrip("\n")))

    def seen_topic(self, topic):
        with self.lock:
            return any(f" {self.ns} {topic} " in ln for _, _, ln in self.lines)

    def exits(self, start, ids):
        with self.lock:
            lines = self.lines[start:]
        evs = []
        for mono, wall, ln in lines:
            parts = ln.split(" ", 6)
            if len(parts) < 7 or parts[4] != self.ns or parts[5] != "/tasks/exit":
                continue
            try:
                body = json.loads(parts[6])
            except ValueError:
                continue
            if body.get("container_id") not in ids:
                continue
            ex = body.get("exited_at")
            body["exited_at"] = parse_rfc3339(ex) if ex else None
            body["mono"], body["wall"] = mono, wall
            evs.append(body)
        return {"events": evs}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def parse_rfc3339(s):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    if not m:
        return None
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base + frac
