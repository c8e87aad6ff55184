"""Marked sections of docs/benchmarks.md that other scripts own: B8
(bench/b8_pods.py), the cgroup v2 run (bench/guest-v2.sh,
bench/v2_section.py) and B9 (bench/b9_tetherctl.py). The harness carries them over when it rewrites the
file; their owners replace them in place."""

B8_START = "<!-- B8 start -->"
B8_END = "<!-- B8 end -->"
V2_START = "<!-- V2 start -->"
V2_END = "<!-- V2 end -->"
B9_START = "<!-- B9 start -->"
B9_END = "<!-- B9 end -->"
SECTIONS = [(B8_START, B8_END), (V2_START, V2_END), (B9_START, B9_END)]


def marked_sections(text):
    """The B8, V2 and B9 sections present in text, markers included, in that order."""
    out = []
    for start_mark, end_mark in SECTIONS:
        start, end = text.find(start_mark), text.find(end_mark)
        if 0 <= start < end:
            out.append(text[start:end + len(end_mark)])
    return out


def replace_section(text, start_mark, end_mark, section):
    """text with its section between the two markers replaced by section
    (which carries the markers), or with section appended after a blank line
    when the markers are not there."""
    s, e = text.find(start_mark), text.find(end_mark)
    if 0 <= s < e:
        return text[:s] + section + text[e + len(end_mark):]
    return text.rstrip("\n") + "\n\n" + section + "\n"
