//! The configs rendered here against the ones scripts/critest.sh,
//! tests/common/containerd.rs and scripts/guest/systemd/lib.sh wrote by hand
//! before this module wrote them (`today/*.toml`, `@TMP@` standing for the
//! private dir): the same effective config, compared as parsed TOML.

use std::path::{Path, PathBuf};

use super::*;

mod sandboxer;

const TMP: &str = "/tmp/tether-critest.abc";

fn today(name: &str) -> toml::Value {
    let text = match name {
        "cri-v2" => include_str!("today/cri-v2.toml"),
        "cri-v3" => include_str!("today/cri-v3.toml"),
        "plain-v2" => include_str!("today/plain-v2.toml"),
        "plain-v2-on-2x" => include_str!("today/plain-v2-on-2x.toml"),
        "socketdir-v2-on-2x" => include_str!("today/socketdir-v2-on-2x.toml"),
        "tether-options" => include_str!("today/tether-options.toml"),
        _ => unreachable!("no fixture {name}"),
    };
    toml::from_str(&text.replace("@TMP@", TMP)).expect("fixture parses")
}

fn parsed(text: &str) -> toml::Value {
    toml::from_str(text).unwrap_or_else(|e| panic!("rendered config does not parse: {e}\n{text}"))
}

fn v(s: &str) -> Version {
    Version::parse(s).expect("version")
}

/// critest.sh's four handlers.
fn critest_settings(version: Version) -> Settings {
    let tmp = Path::new(TMP);
    let shim = tmp.join("bin/containerd-shim-tether-v2");
    let tether = |name: &str, binary: Option<String>| Handler {
        name: name.into(),
        runtime_type: "io.containerd.tether.v2".into(),
        shim: Some(shim.clone()),
        binary_name: binary,
        systemd_cgroup: false,
        shim_cgroup: None,
        sandboxer: None,
        disable_pause_image_pull: false,
    };
    let mut s = Settings::in_dir(tmp);
    s.cri = Some(Cri {
        sandbox_image: "registry.k8s.io/pause:3.10".into(),
        registry_hosts: Some(tmp.join("certs.d")),
        cni: Some(Cni {
            bin_dir: "/usr/lib/cni".into(),
            conf_dir: tmp.join("cni/net.d"),
        }),
        default_runtime: "runc".into(),
        handlers: vec![
            Handler::parse("runc=io.containerd.runc.v2").unwrap(),
            tether("tether", None),
            tether("tether-crun", Some("crun".into())),
            tether(
                "tether-wrapped",
                Some(tmp.join("bin/runc-wrapped").display().to_string()),
            ),
        ],
    });
    let _ = version;
    s
}

#[test]
fn versions_parse_from_numbers_and_from_containerd_version() {
    assert_eq!(v("1.6.20"), Version { major: 1, minor: 6 });
    assert_eq!(v("v2.3.7"), Version { major: 2, minor: 3 });
    assert_eq!(
        v("containerd github.com/containerd/containerd/v2 v2.4.2 0123abcd"),
        Version { major: 2, minor: 4 }
    );
    assert_eq!(
        v("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1"),
        Version { major: 1, minor: 6 }
    );
    assert_eq!(Version::parse("containerd"), None);
}

#[test]
fn cri_config_of_1_x_is_critest_sh_s() {
    for version in ["1.6.20", "1.7.35"] {
        let dir = PathBuf::from(TMP);
        let r = render(&critest_settings(v(version)), v(version), &dir).unwrap();
        assert_eq!(
            parsed(&r.config),
            today("cri-v2"),
            "{version}:\n{}",
            r.config
        );
        // One options file a tether handler, named as before.
        let names: Vec<String> = r
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(
            names,
            ["tether", "tether-crun", "tether-wrapped"].map(|h| format!("{TMP}/{h}-options.toml"))
        );
        assert_eq!(parsed(&r.files[0].1), today("tether-options"));
        assert_eq!(
            parsed(&r.files[2].1)
                .get("BinaryName")
                .and_then(|b| b.as_str()),
            Some(format!("{TMP}/bin/runc-wrapped").as_str())
        );
    }
}

#[test]
fn cri_config_of_2_x_is_critest_sh_s() {
    for version in ["2.0.14", "2.3.7", "2.4.2"] {
        let r = render(&critest_settings(v(version)), v(version), Path::new(TMP)).unwrap();
        assert_eq!(
            parsed(&r.config),
            today("cri-v3"),
            "{version}:\n{}",
            r.config
        );
        assert!(r.files.is_empty());
    }
}

fn plain(version: Version) -> Settings {
    let mut s = Settings::in_dir(Path::new(TMP));
    s.log_level = Some("debug".into());
    s.disable_cri(version);
    s
}

#[test]
fn plain_config_of_1_x_is_the_harness_s() {
    for version in ["1.6.20", "1.7.35"] {
        let r = render(&plain(v(version)), v(version), Path::new(TMP)).unwrap();
        assert_eq!(
            parsed(&r.config),
            today("plain-v2"),
            "{version}:\n{}",
            r.config
        );
    }
}

/// The harness wrote version 2 for 2.x too, which 2.x migrates: the same
/// keys under version 3.
fn as_version_3(mut config: toml::Value) -> toml::Value {
    config["version"] = toml::Value::Integer(3);
    config
}

#[test]
fn plain_config_of_2_x_is_the_harness_s_in_version_3() {
    for version in ["2.0.14", "2.3.7", "2.4.2"] {
        let r = render(&plain(v(version)), v(version), Path::new(TMP)).unwrap();
        assert_eq!(
            parsed(&r.config),
            as_version_3(today("plain-v2-on-2x")),
            "{version}:\n{}",
            r.config
        );
    }
    let mut s = plain(v("2.3.7"));
    s.shim_socket_dir = Some(Path::new(TMP).join("s"));
    let r = render(&s, v("2.3.7"), Path::new(TMP)).unwrap();
    assert_eq!(parsed(&r.config), as_version_3(today("socketdir-v2-on-2x")));
}

#[test]
fn settings_a_version_lacks_are_refused() {
    let mut s = plain(v("2.0.14"));
    s.shim_socket_dir = Some("/s".into());
    for version in ["1.6.20", "2.0.14"] {
        assert!(matches!(
            render(&s, v(version), Path::new(TMP)),
            Err(ConfigError::NotInVersion { .. })
        ));
    }
    assert!(matches!(
        render(&plain(v("1.5.0")), v("1.5.0"), Path::new(TMP)),
        Err(ConfigError::Unsupported(1, 5))
    ));
}

#[test]
fn top_level_keys_come_before_every_table() {
    for version in ["1.6.20", "2.3.7"] {
        let r = render(&critest_settings(v(version)), v(version), Path::new(TMP)).unwrap();
        let first_table = r.config.lines().position(|l| l.starts_with('[')).unwrap();
        let keys: Vec<&str> = r.config.lines().take(first_table).collect();
        assert!(
            keys.iter().any(|l| l.starts_with("version = ")),
            "{}",
            r.config
        );
        assert!(
            keys.iter().any(|l| l.starts_with("state = ")),
            "{}",
            r.config
        );
    }
}

#[test]
fn handlers_parse_from_the_command_line_form() {
    assert_eq!(
        Handler::parse("tether=io.containerd.tether.v2:/bin/shim:crun").unwrap(),
        Handler {
            name: "tether".into(),
            runtime_type: "io.containerd.tether.v2".into(),
            shim: Some("/bin/shim".into()),
            binary_name: Some("crun".into()),
            systemd_cgroup: false,
            shim_cgroup: None,
            sandboxer: None,
            disable_pause_image_pull: false,
        }
    );
    let runc = Handler::parse("runc=io.containerd.runc.v2").unwrap();
    assert_eq!((runc.shim, runc.binary_name), (None, None));
    assert!(Handler::parse("runc").is_err());
    assert!(Handler::parse("=io.containerd.runc.v2").is_err());
}

#[test]
fn handlers_parse_with_their_cgroup_options() {
    let h = Handler::parse(
        "tether=io.containerd.tether.v2::/usr/sbin/runc,SystemdCgroup=true,ShimCgroup=/tether-shims.slice",
    )
    .unwrap();
    assert_eq!(
        h,
        Handler {
            name: "tether".into(),
            runtime_type: "io.containerd.tether.v2".into(),
            shim: None,
            binary_name: Some("/usr/sbin/runc".into()),
            systemd_cgroup: true,
            shim_cgroup: Some("/tether-shims.slice".into()),
            sandboxer: None,
            disable_pause_image_pull: false,
        }
    );
    let off = Handler::parse("runc=io.containerd.runc.v2,SystemdCgroup=false").unwrap();
    assert_eq!((off.systemd_cgroup, off.shim_cgroup), (false, None));
    for bad in [
        "runc=io.containerd.runc.v2,SystemdCgroup=yes",
        "runc=io.containerd.runc.v2,SystemdCgroup",
        "runc=io.containerd.runc.v2,ShimCgroup=",
        "runc=io.containerd.runc.v2,NoPivotRoot=true",
        "runc=io.containerd.runc.v2,Sandboxer=vm",
        "runc=io.containerd.runc.v2,Sandboxer=",
        "runc=io.containerd.runc.v2,sandboxer=shim",
        "runc=io.containerd.runc.v2,DisablePauseImagePull=yes",
        "runc=io.containerd.runc.v2,DisablePauseImagePull",
        "runc=io.containerd.runc.v2,disable_pause_image_pull=true",
    ] {
        assert!(Handler::parse(bad).is_err(), "{bad}");
    }
}

const NEWEST: &str = "/var/cache/tether-peers/runc-1.5.3/bin/runc";
const DEBIAN: &str = "/usr/sbin/runc";

/// The systemd node's containerd.service (scripts/guest/systemd-suite.sh):
/// tether and containerd's runc shim, each with two runcs, SystemdCgroup
/// and a ShimCgroup slice per shim, a pinned sandbox image.
fn node_settings() -> Settings {
    let mut handlers = Vec::new();
    for (shim, kind, slice) in [
        ("tether", "tether", "/tether-shims.slice"),
        ("runc", "runc", "/go-shims.slice"),
    ] {
        for (suffix, runc) in [("", NEWEST), ("-debian", DEBIAN)] {
            let text = format!(
                "{shim}{suffix}=io.containerd.{kind}.v2::{runc},SystemdCgroup=true,ShimCgroup={slice}"
            );
            handlers.push(Handler::parse(&text).unwrap());
        }
    }
    let mut s = Settings::system();
    s.cri = Some(Cri::with_handlers(
        "tether.local/node:1",
        handlers,
        Some("runc".into()),
    ));
    s
}

fn node_fixture(name: &str, dir: &str) -> toml::Value {
    let text = match name {
        "node-v2" => include_str!("today/node-v2.toml"),
        "node-v3" => include_str!("today/node-v3.toml"),
        _ => unreachable!("no fixture {name}"),
    };
    let text = text
        .replace("@RUNC_NEWEST@", NEWEST)
        .replace("@RUNC_DEBIAN@", DEBIAN)
        .replace("@DIR@", dir);
    toml::from_str(&text).expect("fixture parses")
}

#[test]
fn node_config_of_2_x_is_lib_sh_s() {
    for version in ["2.0.14", "2.3.7", "2.4.2"] {
        let r = render(&node_settings(), v(version), Path::new("/etc/containerd")).unwrap();
        assert_eq!(
            parsed(&r.config),
            node_fixture("node-v3", ""),
            "{version}:\n{}",
            r.config
        );
        assert!(r.files.is_empty());
    }
}

#[test]
fn node_config_of_1_x_has_the_same_handlers_in_version_2() {
    let dir = "/etc/containerd";
    for version in ["1.6.20", "1.7.35"] {
        let r = render(&node_settings(), v(version), Path::new(dir)).unwrap();
        assert_eq!(
            parsed(&r.config),
            node_fixture("node-v2", dir),
            "{version}:\n{}",
            r.config
        );
        let files: Vec<(String, toml::Value)> = r
            .files
            .iter()
            .map(|(p, t)| (p.display().to_string(), parsed(t)))
            .collect();
        let options = |runc: &str| {
            toml::from_str::<toml::Value>(&format!(
                "BinaryName = {runc:?}\nSystemdCgroup = true\nShimCgroup = \"/tether-shims.slice\""
            ))
            .unwrap()
        };
        assert_eq!(
            files,
            [
                (format!("{dir}/tether-options.toml"), options(NEWEST)),
                (format!("{dir}/tether-debian-options.toml"), options(DEBIAN)),
            ]
        );
    }
}

#[test]
fn a_system_config_names_no_dir_and_no_log_level() {
    for version in ["1.6.20", "2.3.7"] {
        let mut s = Settings::system();
        s.disable_cri(v(version));
        let r = render(&s, v(version), Path::new("/etc/containerd")).unwrap();
        let config = parsed(&r.config);
        let keys: Vec<&String> = config.as_table().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["disabled_plugins", "plugins", "version"],
            "{}",
            r.config
        );
        assert_eq!(config["plugins"], toml::Value::Table(Default::default()));
    }
}

#[test]
fn cgroup_options_of_a_private_handler() {
    let tether = Handler::parse(
        "tether=io.containerd.tether.v2:/bin/shim,SystemdCgroup=true,ShimCgroup=/shims",
    )
    .unwrap();
    let mut s = Settings::in_dir(Path::new(TMP));
    s.cri = Some(Cri::with_handlers("pause", vec![tether], None));
    let r = render(&s, v("2.3.7"), Path::new(TMP)).unwrap();
    let runtime = &parsed(&r.config)["plugins"]["io.containerd.cri.v1.runtime"];
    assert_eq!(
        runtime["containerd"]["default_runtime_name"].as_str(),
        Some("tether")
    );
    // An options table even without a BinaryName; the private tunables stay.
    let options = &runtime["containerd"]["runtimes"]["tether"]["options"];
    assert_eq!(
        options,
        &toml::from_str::<toml::Value>("SystemdCgroup = true\nShimCgroup = \"/shims\"").unwrap()
    );
    assert_eq!(
        runtime["netns_mounts_under_state_dir"].as_bool(),
        Some(true)
    );
    let r = render(&s, v("1.6.20"), Path::new(TMP)).unwrap();
    assert_eq!(
        parsed(&r.files[0].1),
        toml::from_str::<toml::Value>(
            "BinaryName = \"runc\"\nSystemdCgroup = true\nShimCgroup = \"/shims\""
        )
        .unwrap()
    );
}
