//! Reading cgroup statistics into containerd's metrics messages.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use protobuf::MessageField;

use crate::cgroup::{key_values, number};
use crate::protos::cgroup1_metrics as m1;
use crate::protos::cgroup2_metrics as m2;

/// USER_HZ, the unit of cpuacct.stat: 100 on every Linux architecture.
const USER_HZ: u64 = 100;

/// cgroup v1 metrics from the controller directories.
pub fn v1(dirs: &HashMap<String, PathBuf>) -> m1::Metrics {
    let mut out = m1::Metrics::new();
    if let Some(dir) = dirs.get("memory") {
        out.memory = MessageField::some(v1_memory(dir));
        let oom = key_values(&dir.join("memory.oom_control"));
        out.memory_oom_control = MessageField::some(m1::MemoryOomControl {
            oom_kill_disable: oom.get("oom_kill_disable").copied().unwrap_or(0),
            under_oom: oom.get("under_oom").copied().unwrap_or(0),
            oom_kill: oom.get("oom_kill").copied().unwrap_or(0),
            ..Default::default()
        });
    }
    let cpu = dirs.get("cpuacct").map(|d| v1_cpu_usage(d));
    let throttle = dirs.get("cpu").map(|d| {
        let s = key_values(&d.join("cpu.stat"));
        m1::Throttle {
            periods: s.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: s.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: s.get("throttled_time").copied().unwrap_or(0),
            ..Default::default()
        }
    });
    if cpu.is_some() || throttle.is_some() {
        out.cpu = MessageField::some(m1::CPUStat {
            usage: cpu.into(),
            throttling: throttle.into(),
            ..Default::default()
        });
    }
    if let Some(dir) = dirs.get("pids") {
        out.pids = MessageField::some(m1::PidsStat {
            current: number(&dir.join("pids.current")).unwrap_or(0),
            limit: number(&dir.join("pids.max")).unwrap_or(0),
            ..Default::default()
        });
    }
    if let Some(dir) = dirs.get("blkio") {
        out.blkio = MessageField::some(v1_blkio(dir));
    }
    if let Some(dir) = dirs.get("hugetlb") {
        out.hugetlb = hugetlb_sizes(dir)
            .into_iter()
            .map(|size| {
                let f = |what: &str| number(&dir.join(format!("hugetlb.{size}.{what}")));
                m1::HugetlbStat {
                    usage: f("usage_in_bytes").unwrap_or(0),
                    max: f("max_usage_in_bytes").unwrap_or(0),
                    failcnt: f("failcnt").unwrap_or(0),
                    pagesize: size,
                    ..Default::default()
                }
            })
            .collect();
    }
    out
}

fn v1_memory(dir: &Path) -> m1::MemoryStat {
    let s = key_values(&dir.join("memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let entry = |prefix: &str| {
        let f = |what: &str| number(&dir.join(format!("{prefix}.{what}"))).unwrap_or(0);
        MessageField::some(m1::MemoryEntry {
            limit: f("limit_in_bytes"),
            usage: f("usage_in_bytes"),
            max: f("max_usage_in_bytes"),
            failcnt: f("failcnt"),
            ..Default::default()
        })
    };
    m1::MemoryStat {
        cache: g("cache"),
        rss: g("rss"),
        rss_huge: g("rss_huge"),
        mapped_file: g("mapped_file"),
        dirty: g("dirty"),
        writeback: g("writeback"),
        pg_pg_in: g("pgpgin"),
        pg_pg_out: g("pgpgout"),
        pg_fault: g("pgfault"),
        pg_maj_fault: g("pgmajfault"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        hierarchical_memory_limit: g("hierarchical_memory_limit"),
        hierarchical_swap_limit: g("hierarchical_memsw_limit"),
        total_cache: g("total_cache"),
        total_rss: g("total_rss"),
        total_rss_huge: g("total_rss_huge"),
        total_mapped_file: g("total_mapped_file"),
        total_dirty: g("total_dirty"),
        total_writeback: g("total_writeback"),
        total_pg_pg_in: g("total_pgpgin"),
        total_pg_pg_out: g("total_pgpgout"),
        total_pg_fault: g("total_pgfault"),
        total_pg_maj_fault: g("total_pgmajfault"),
        total_inactive_anon: g("total_inactive_anon"),
        total_active_anon: g("total_active_anon"),
        total_inactive_file: g("total_inactive_file"),
        total_active_file: g("total_active_file"),
        total_unevictable: g("total_unevictable"),
        usage: entry("memory"),
        swap: entry("memory.memsw"),
        kernel: entry("memory.kmem"),
        kernel_tcp: entry("memory.kmem.tcp"),
        ..Default::default()
    }
}

fn v1_cpu_usage(dir: &Path) -> m1::CPUUsage {
    let ticks = key_values(&dir.join("cpuacct.stat"));
    let ns = |k: &str| ticks.get(k).copied().unwrap_or(0) * (1_000_000_000 / USER_HZ);
    let per_cpu = fs::read_to_string(dir.join("cpuacct.usage_percpu"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    m1::CPUUsage {
        total: number(&dir.join("cpuacct.usage")).unwrap_or(0),
        kernel: ns("system"),
        user: ns("user"),
        per_cpu,
        ..Default::default()
    }
}

fn v1_blkio(dir: &Path) -> m1::BlkIOStat {
    // CFQ files when the kernel has them, the throttle layer's otherwise.
    let read = |name: &str| {
        let full = dir.join(format!("blkio.{name}"));
        let path = if full.exists() {
            full
        } else {
            dir.join(format!(
                "blkio.throttle.{}",
                name.trim_end_matches("_recursive")
            ))
        };
        blkio_entries(&fs::read_to_string(path).unwrap_or_default())
    };
    m1::BlkIOStat {
        io_service_bytes_recursive: read("io_service_bytes_recursive"),
        io_serviced_recursive: read("io_serviced_recursive"),
        io_queued_recursive: read("io_queued_recursive"),
        io_service_time_recursive: read("io_service_time_recursive"),
        io_wait_time_recursive: read("io_wait_time_recursive"),
        io_merged_recursive: read("io_merged_recursive"),
        io_time_recursive: read("io_time_recursive"),
        sectors_recursive: read("sectors_recursive"),
        ..Default::default()
    }
}

/// Lines of `MAJ:MIN [OP] VALUE`; the closing `Total` line is skipped.
fn blkio_entries(text: &str) -> Vec<m1::BlkIOEntry> {
    let mut names: HashMap<(u64, u64), String> = HashMap::new();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dev, op, value) = match f.as_slice() {
                [dev, op, value] => (*dev, *op, *value),
                [dev, value] => (*dev, "", *value),
                _ => return None,
            };
            let (major, minor) = dev.split_once(':')?;
            let (major, minor) = (major.parse().ok()?, minor.parse().ok()?);
            let device = names
                .entry((major, minor))
                .or_insert_with(|| device_name(major, minor))
                .clone();
            Some(m1::BlkIOEntry {
                op: op.to_string(),
                device,
                major,
                minor,
                value: value.parse().ok()?,
                ..Default::default()
            })
        })
        .collect()
}

/// `/dev/<name>` of a block device, from sysfs.
fn device_name(major: u64, minor: u64) -> String {
    let uevent = fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"));
    uevent
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|n| format!("/dev/{n}"))
        })
        .unwrap_or_default()
}

/// Page sizes with hugetlb files in `dir` (e.g. "2MB").
fn hugetlb_sizes(dir: &Path) -> Vec<String> {
    let mut sizes: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let rest = name.strip_prefix("hugetlb.")?;
                    let (size, what) = rest.split_once('.')?;
                    (what == "max" || what == "limit_in_bytes").then(|| size.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    sizes.dedup();
    sizes
}

/// One value of a unified-hierarchy file as containerd reports it: "max"
/// (no limit) is the largest value, and a file that is missing or unreadable
/// (a controller not enabled) is 0.
fn v2_value(path: &Path) -> u64 {
    match fs::read_to_string(path) {
        Ok(text) if text.trim() == "max" => u64::MAX,
        Ok(text) => text.trim().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

/// A *.pressure file: `some|full avg10=F avg60=F avg300=F total=N` lines.
/// Unset when the file is missing (no PSI in the kernel); a value that does
/// not parse is left 0.
fn psi(path: &Path) -> MessageField<m2::PSIStats> {
    let Ok(text) = fs::read_to_string(path) else {
        return MessageField::none();
    };
    let mut out = m2::PSIStats::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut out.some,
            Some("full") => &mut out.full,
            _ => continue,
        };
        let mut d = m2::PSIData::new();
        for (k, v) in words.filter_map(|w| w.split_once('=')) {
            match k {
                "avg10" => d.avg10 = v.parse().unwrap_or(0.0),
                "avg60" => d.avg60 = v.parse().unwrap_or(0.0),
                "avg300" => d.avg300 = v.parse().unwrap_or(0.0),
                "total" => d.total = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        *slot = MessageField::some(d);
    }
    MessageField::some(out)
}

/// Unified-hierarchy metrics from the container's directory.
pub fn v2(dir: &Path) -> m2::Metrics {
    let mut out = m2::Metrics::new();
    out.pids = MessageField::some(m2::PidsStat {
        current: v2_value(&dir.join("pids.current")),
        limit: v2_value(&dir.join("pids.max")),
        ..Default::default()
    });
    let c = key_values(&dir.join("cpu.stat"));
    let g = |k: &str| c.get(k).copied().unwrap_or(0);
    out.cpu = MessageField::some(m2::CPUStat {
        usage_usec: g("usage_usec"),
        user_usec: g("user_usec"),
        system_usec: g("system_usec"),
        nr_periods: g("nr_periods"),
        nr_throttled: g("nr_throttled"),
        throttled_usec: g("throttled_usec"),
        nr_bursts: g("nr_bursts"),
        burst_usec: g("burst_usec"),
        psi: psi(&dir.join("cpu.pressure")),
        ..Default::default()
    });
    out.memory = MessageField::some(v2_memory(dir));
    let e = key_values(&dir.join("memory.events"));
    let g = |k: &str| e.get(k).copied().unwrap_or(0);
    out.memory_events = MessageField::some(m2::MemoryEvents {
        low: g("low"),
        high: g("high"),
        max: g("max"),
        oom: g("oom"),
        oom_kill: g("oom_kill"),
        oom_group_kill: g("oom_group_kill"),
        ..Default::default()
    });
    out.io = MessageField::some(m2::IOStat {
        usage: io_entries(&fs::read_to_string(dir.join("io.stat")).unwrap_or_default()),
        psi: psi(&dir.join("io.pressure")),
        ..Default::default()
    });
    out.hugetlb = hugetlb_sizes(dir)
        .into_iter()
        .map(|size| m2::HugeTlbStat {
            current: v2_value(&dir.join(format!("hugetlb.{size}.current"))),
            max: v2_value(&dir.join(format!("hugetlb.{size}.max"))),
            failcnt: key_values(&dir.join(format!("hugetlb.{size}.events")))
                .get("max")
                .copied()
                .unwrap_or(0),
            pagesize: size,
            ..Default::default()
        })
        .collect();
    out
}

fn v2_memory(dir: &Path) -> m2::MemoryStat {
    let s = key_values(&dir.join("memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let n = |f: &str| v2_value(&dir.join(f));
    m2::MemoryStat {
        anon: g("anon"),
        file: g("file"),
        kernel_stack: g("kernel_stack"),
        slab: g("slab"),
        sock: g("sock"),
        shmem: g("shmem"),
        file_mapped: g("file_mapped"),
        file_dirty: g("file_dirty"),
        file_writeback: g("file_writeback"),
        anon_thp: g("anon_thp"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        slab_reclaimable: g("slab_reclaimable"),
        slab_unreclaimable: g("slab_unreclaimable"),
        pgfault: g("pgfault"),
        pgmajfault: g("pgmajfault"),
        workingset_refault: g("workingset_refault")
            .max(g("workingset_refault_anon") + g("workingset_refault_file")),
        workingset_activate: g("workingset_activate")
            .max(g("workingset_activate_anon") + g("workingset_activate_file")),
        workingset_nodereclaim: g("workingset_nodereclaim"),
        pgrefill: g("pgrefill"),
        pgscan: g("pgscan"),
        pgsteal: g("pgsteal"),
        pgactivate: g("pgactivate"),
        pgdeactivate: g("pgdeactivate"),
        pglazyfree: g("pglazyfree"),
        pglazyfreed: g("pglazyfreed"),
        thp_fault_alloc: g("thp_fault_alloc"),
        thp_collapse_alloc: g("thp_collapse_alloc"),
        usage: n("memory.current"),
        usage_limit: n("memory.max"),
        swap_usage: n("memory.swap.current"),
        swap_limit: n("memory.swap.max"),
        max_usage: n("memory.peak"),
        swap_max_usage: n("memory.swap.peak"),
        psi: psi(&dir.join("memory.pressure")),
        ..Default::default()
    }
}

/// io.stat lines: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...`.
fn io_entries(text: &str) -> Vec<m2::IOEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = f.next()?.split_once(':')?;
            let mut e = m2::IOEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..Default::default()
            };
            for kv in f {
                let (k, v) = kv.split_once('=')?;
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => e.rbytes = v,
                    "wbytes" => e.wbytes = v,
                    "rios" => e.rios = v,
                    "wios" => e.wios = v,
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files as a cgroup v2 container's directory holds them (recorded from a
    /// unified-hierarchy host running a container holding ~60 MiB).
    fn recorded_v2() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
        w("memory.current", "63438848\n");
        w("memory.max", "max\n");
        w("memory.peak", "64225280\n");
        w("memory.swap.current", "0\n");
        w("memory.swap.max", "max\n");
        w(
            "memory.stat",
            "anon 62988288\nfile 12288\nkernel_stack 16384\nslab 178432\nsock 0\nshmem 0\n\
             file_mapped 0\nfile_dirty 0\nfile_writeback 0\nanon_thp 0\ninactive_anon 62955520\n\
             active_anon 32768\ninactive_file 12288\nactive_file 0\nunevictable 0\n\
             slab_reclaimable 70656\nslab_unreclaimable 107776\npgfault 15725\npgmajfault 0\n\
             workingset_refault_anon 0\nworkingset_refault_file 0\nworkingset_activate_anon 0\n\
             workingset_activate_file 0\nworkingset_nodereclaim 0\npgrefill 0\npgscan 0\n\
             pgsteal 0\npgactivate 8\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\n\
             thp_fault_alloc 0\nthp_collapse_alloc 0\n",
        );
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        w(
            "cpu.stat",
            "usage_usec 31543\nuser_usec 10512\nsystem_usec 21031\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        );
        w("pids.current", "2\n");
        w("pids.max", "max\n");
        w(
            "io.stat",
            "254:0 rbytes=1310720 wbytes=0 rios=36 wios=0 dbytes=0 dios=0\n",
        );
        w("hugetlb.2MB.current", "0\n");
        w("hugetlb.2MB.max", "max\n");
        w("hugetlb.2MB.events", "max 2\n");
        w(
            "memory.pressure",
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=678\n",
        );
        dir
    }

    #[test]
    fn v2_metrics_from_recorded_files() {
        let dir = recorded_v2();
        let m = v2(dir.path());
        assert_eq!(m.memory.usage, 63_438_848);
        assert_eq!(m.memory.max_usage, 64_225_280);
        assert_eq!(m.memory.anon, 62_988_288);
        assert_eq!(m.memory.pgfault, 15_725);
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!(m.cpu.usage_usec, 31_543);
        assert_eq!(m.pids.current, 2);
        // "max" (no limit) is the largest value, in every field, as
        // containerd reports it; a file that is not there is 0.
        assert_eq!(m.pids.limit, u64::MAX);
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!(m.memory.swap_limit, u64::MAX);
        assert_eq!(m.hugetlb[0].max, u64::MAX);
        assert_eq!(m.hugetlb[0].failcnt, 2);
        assert_eq!(m.memory.psi.some.avg10, 1.5);
        assert_eq!(m.memory.psi.some.total, 12_345);
        assert_eq!(m.memory.psi.full.total, 678);
        assert!(m.cpu.psi.is_none(), "no cpu.pressure file");
        std::fs::remove_file(dir.path().join("memory.swap.max")).unwrap();
        assert_eq!(v2(dir.path()).memory.swap_limit, 0);
        assert_eq!(m.io.usage[0].major, 254);
        assert_eq!(m.io.usage[0].rbytes, 1_310_720);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
        let any = crate::cgroup::Cgroup::V2(dir.path().into())
            .stats()
            .unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
    }

    #[test]
    fn blkio_lines() {
        let e = blkio_entries("8:0 Read 4096\n8:0 Write 0\n8:16 1234\nTotal 4096\n");
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].op.as_str(), e[0].major, e[0].value),
            ("Read", 8, 4096)
        );
        assert_eq!((e[2].op.as_str(), e[2].minor, e[2].value), ("", 16, 1234));
    }
}
