//! The configs rendered here against the ones scripts/critest.sh and
//! tests/common/containerd.rs wrote by hand before this module existed
//! (`today/*.toml`, `@TMP@` standing for the private dir): the same
//! effective config, compared as parsed TOML.

use std::path::{Path, PathBuf};

use super::*;

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
    s.log_level = "debug".into();
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
        }
    );
    let runc = Handler::parse("runc=io.containerd.runc.v2").unwrap();
    assert_eq!((runc.shim, runc.binary_name), (None, None));
    assert!(Handler::parse("runc").is_err());
    assert!(Handler::parse("=io.containerd.runc.v2").is_err());
}
