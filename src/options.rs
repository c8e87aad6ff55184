//! Runtime options, in every form containerd hands them to a shim: runc's
//! `containerd.runc.v1.Options` (ctr, the client API, containerd 2.x),
//! `containerd.linux.runc.CreateOptions` and `RuncOptions` (containerd 1.7's
//! client for runtimes not named `io.containerd.runc*`), and CRI's
//! `runtimeoptions.v1.Options` carrying the handler's TOML `options` table.

use protobuf::well_known_types::any::Any;
use protobuf::Message;

use crate::error::{Error, Result};
use crate::protos::runc_options::Options as RuncOptions;
use crate::protos::runctypes::{CreateOptions, RuncOptions as LegacyRuncOptions};
use crate::protos::runtimeoptions::Options as CriOptions;
use crate::runc::SpillMax;
use crate::runc::{RuntimeOptions, Timeouts};

/// The option types tether understands, by the last part of their type URL.
pub const KNOWN_TYPES: &[&str] = &[
    "containerd.runc.v1.Options",
    "containerd.linux.runc.CreateOptions",
    "containerd.linux.runc.RuncOptions",
    "runtimeoptions.v1.Options",
];

/// The bare type name of a type URL (`…/name` → `name`).
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or_default()
}

/// True if `any` holds options of a type tether reads.
pub fn is_runtime_options(any: &Any) -> bool {
    KNOWN_TYPES.contains(&type_name(&any.type_url))
}

/// Decodes runtime options; none (or an empty Any) means the defaults.
pub fn runtime_options(any: Option<&Any>) -> Result<RuntimeOptions> {
    let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
        return Ok(RuntimeOptions::default());
    };
    let what = format!("runtime options of type {}", any.type_url);
    match type_name(&any.type_url) {
        "containerd.runc.v1.Options" => {
            let o = RuncOptions::parse_from_bytes(&any.value).map_err(Error::decode(&what))?;
            Ok(RuntimeOptions {
                binary: o.binary_name,
                root: o.root,
                systemd_cgroup: o.systemd_cgroup,
                no_pivot_root: o.no_pivot_root,
                no_new_keyring: o.no_new_keyring,
                shim_cgroup: o.shim_cgroup,
                io_uid: o.io_uid,
                io_gid: o.io_gid,
                criu_path: o.criu_path,
                criu_image_path: o.criu_image_path,
                criu_work_path: o.criu_work_path,
                ..Default::default()
            })
        }
        "containerd.linux.runc.CreateOptions" => {
            let o = CreateOptions::parse_from_bytes(&any.value).map_err(Error::decode(&what))?;
            Ok(RuntimeOptions {
                no_pivot_root: o.no_pivot_root,
                no_new_keyring: o.no_new_keyring,
                shim_cgroup: o.shim_cgroup,
                io_uid: o.io_uid,
                io_gid: o.io_gid,
                criu_image_path: o.criu_image_path,
                criu_work_path: o.criu_work_path,
                ..Default::default()
            })
        }
        "containerd.linux.runc.RuncOptions" => {
            let o =
                LegacyRuncOptions::parse_from_bytes(&any.value).map_err(Error::decode(&what))?;
            Ok(RuntimeOptions {
                binary: o.runtime,
                root: o.runtime_root,
                systemd_cgroup: o.systemd_cgroup,
                criu_path: o.criu_path,
                ..Default::default()
            })
        }
        "runtimeoptions.v1.Options" => {
            let o = CriOptions::parse_from_bytes(&any.value).map_err(Error::decode(&what))?;
            let body = if !o.config_path.is_empty() {
                std::fs::read(&o.config_path).map_err(Error::io("read", &o.config_path))?
            } else {
                o.config_body
            };
            toml_options(&String::from_utf8_lossy(&body)).map_err(Error::decode(what))
        }
        _ => Err(Error::InvalidArgument(format!(
            "{what}: unsupported type (tether takes {})",
            KNOWN_TYPES.join(", ")
        ))),
    }
}

/// The runc-style keys of a CRI runtime `options` table.
pub(crate) fn toml_options(text: &str) -> std::result::Result<RuntimeOptions, toml::de::Error> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct Table {
        binary_name: String,
        root: String,
        systemd_cgroup: bool,
        no_pivot_root: bool,
        no_new_keyring: bool,
        shim_cgroup: String,
        io_uid: u32,
        io_gid: u32,
        criu_path: String,
        criu_image_path: String,
        criu_work_path: String,
        runc_timeouts: toml::Table,
        output_spill_max: Option<u64>,
    }
    let t: Table = toml::from_str(text)?;
    let timeouts = Timeouts::from_table(&t.runc_timeouts).map_err(serde::de::Error::custom)?;
    Ok(RuntimeOptions {
        binary: t.binary_name,
        root: t.root,
        systemd_cgroup: t.systemd_cgroup,
        no_pivot_root: t.no_pivot_root,
        no_new_keyring: t.no_new_keyring,
        shim_cgroup: t.shim_cgroup,
        io_uid: t.io_uid,
        io_gid: t.io_gid,
        criu_path: t.criu_path,
        criu_image_path: t.criu_image_path,
        criu_work_path: t.criu_work_path,
        timeouts,
        output_spill_max: t.output_spill_max.map(SpillMax).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        let mut a = Any::new();
        a.type_url = type_url.into();
        a.value = value;
        a
    }

    #[test]
    fn decodes_runc_options() {
        let mut o = RuncOptions::new();
        o.binary_name = "/usr/bin/crun".into();
        o.systemd_cgroup = true;
        let a = any("containerd.runc.v1.Options", o.write_to_bytes().unwrap());
        let r = runtime_options(Some(&a)).unwrap();
        assert_eq!(r.binary, "/usr/bin/crun");
        assert!(r.systemd_cgroup);
    }

    #[test]
    fn decodes_cri_toml_options() {
        let mut o = CriOptions::new();
        o.type_url = "io.containerd.tether.v2.options".into();
        o.config_body = b"BinaryName = \"crun\"\nNoPivotRoot = true\n".to_vec();
        let a = any("runtimeoptions.v1.Options", o.write_to_bytes().unwrap());
        let r = runtime_options(Some(&a)).unwrap();
        assert_eq!(r.binary, "crun");
        assert!(r.no_pivot_root);
    }

    #[test]
    fn reads_runc_timeouts_from_the_toml_options() {
        let r =
            toml_options("BinaryName = \"runc\"\n[RuncTimeouts]\nKill = 3\nDelete = 0\n").unwrap();
        assert_eq!(
            r.timeouts.of("kill"),
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(r.timeouts.of("delete"), None);
        assert_eq!(r.timeouts.update, Timeouts::default().update);
        let e = toml_options("[RuncTimeouts]\nKil = 3\n").unwrap_err();
        assert!(e.to_string().contains("Kil"), "{e}");
    }

    #[test]
    fn reads_the_output_spill_cap_from_the_toml_options() {
        let r = toml_options("OutputSpillMax = 1048576\n").unwrap();
        assert_eq!(r.output_spill_max, SpillMax(1 << 20));
        let r = toml_options("BinaryName = \"runc\"\n").unwrap();
        assert_eq!(r.output_spill_max, SpillMax(64 << 20));
        assert_eq!(
            RuntimeOptions::default().output_spill_max,
            SpillMax(64 << 20)
        );
        assert!(toml_options("OutputSpillMax = -1\n").is_err());
        assert!(toml_options("OutputSpillMax = \"64M\"\n").is_err());
    }

    #[test]
    fn decodes_containerd_1_7_create_options() {
        let mut o = CreateOptions::new();
        o.shim_cgroup = "/tether-shims".into();
        o.io_uid = 1000;
        o.no_pivot_root = true;
        let a = any(
            "containerd.linux.runc.CreateOptions",
            o.write_to_bytes().unwrap(),
        );
        let r = runtime_options(Some(&a)).unwrap();
        assert_eq!(r.shim_cgroup, "/tether-shims");
        assert_eq!(r.io_uid, 1000);
        assert!(r.no_pivot_root);
        assert_eq!(r.binary, "");
    }

    #[test]
    fn decodes_legacy_runc_options() {
        let mut o = LegacyRuncOptions::new();
        o.runtime = "crun".into();
        o.runtime_root = "/run/x".into();
        let a = any(
            "types.googleapis.com/containerd.linux.runc.RuncOptions",
            o.write_to_bytes().unwrap(),
        );
        let r = runtime_options(Some(&a)).unwrap();
        assert_eq!((r.binary.as_str(), r.root.as_str()), ("crun", "/run/x"));
    }

    #[test]
    fn empty_options_mean_defaults_and_unknown_types_are_refused() {
        assert_eq!(runtime_options(None).unwrap(), RuntimeOptions::default());
        let e = runtime_options(Some(&any("example.Unknown", vec![]))).unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("example.Unknown"), "{e}");
        let e = runtime_options(Some(&any("containerd.runc.v1.Options", vec![0xff]))).unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT);
    }
}
