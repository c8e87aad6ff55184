//! A handler's `sandboxer` (the CRI's sandbox controller for its pods):
//! parsed from `Sandboxer=`, written on containerd 2.x, refused on 1.x; and
//! its `disable_pause_image_pull` (no sandbox image pull for its pods):
//! parsed from `DisablePauseImagePull=`, written on 2.4+, refused before.

use std::path::Path;

use super::*;

/// critest.sh's `tether-sandbox`: the tether shim as the pods' sandbox
/// controller.
const SANDBOX_HANDLER: &str =
    "tether-sandbox=io.containerd.tether.v2:/tmp/tether-critest.abc/bin/containerd-shim-tether-v2,Sandboxer=shim";

#[test]
fn handlers_parse_with_a_sandboxer() {
    let h = Handler::parse(SANDBOX_HANDLER).unwrap();
    assert_eq!(h.name, "tether-sandbox");
    assert_eq!(h.sandboxer.as_deref(), Some("shim"));
    assert_eq!(
        (h.binary_name, h.systemd_cgroup, h.shim_cgroup),
        (None, false, None)
    );
    let pause = Handler::parse("runc=io.containerd.runc.v2,Sandboxer=podsandbox").unwrap();
    assert_eq!(pause.sandboxer.as_deref(), Some("podsandbox"));
}

fn with_sandbox_handler(version: Version) -> Settings {
    let mut s = critest_settings(version);
    let cri = s.cri.as_mut().unwrap();
    cri.handlers.push(Handler::parse(SANDBOX_HANDLER).unwrap());
    s
}

/// The tether-sandbox handler's own table.
const SANDBOX_TABLE: &str =
    "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.tether-sandbox]";

/// The lines of [`SANDBOX_TABLE`] in a rendered config, up to the next table.
fn handler_table(config: &str) -> Vec<&str> {
    config
        .lines()
        .skip_while(|l| *l != SANDBOX_TABLE)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .collect()
}

#[test]
fn a_sandboxer_is_the_handler_s_key_on_2_x() {
    for version in ["2.0.14", "2.3.7", "2.4.2"] {
        let r = render(
            &with_sandbox_handler(v(version)),
            v(version),
            Path::new(TMP),
        )
        .unwrap();
        // In the handler's own table, under the exact key containerd reads.
        let section = handler_table(&r.config);
        assert!(
            section.contains(&"sandboxer = \"shim\""),
            "{version}: no sandboxer line under {SANDBOX_TABLE}:\n{}",
            r.config
        );
        let runtimes =
            &parsed(&r.config)["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"];
        let want = toml::from_str::<toml::Value>(&format!(
            "runtime_type = \"io.containerd.tether.v2\"\n\
             runtime_path = \"{TMP}/bin/containerd-shim-tether-v2\"\n\
             sandboxer = \"shim\""
        ))
        .unwrap();
        assert_eq!(runtimes["tether-sandbox"], want, "{version}:\n{}", r.config);
        // The other handlers keep containerd's default controller.
        for h in ["runc", "tether", "tether-crun", "tether-wrapped"] {
            assert!(runtimes[h].get("sandboxer").is_none(), "{version} {h}");
        }
    }
}

#[test]
fn a_sandboxer_is_refused_on_1_x() {
    for version in ["1.6.20", "1.7.35"] {
        let err = render(
            &with_sandbox_handler(v(version)),
            v(version),
            Path::new(TMP),
        )
        .expect_err("containerd 1.x has no sandboxer");
        assert!(
            matches!(&err, ConfigError::NoSandboxer { handler, sandboxer, .. }
                if handler == "tether-sandbox" && sandboxer == "shim"),
            "{version}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("tether-sandbox") && text.contains("needs containerd 2.x"),
            "{text}"
        );
    }
    // Without it, the same handlers render.
    assert!(render(&critest_settings(v("1.6.20")), v("1.6.20"), Path::new(TMP)).is_ok());
}

/// critest.sh's `tether-sandbox` on containerd 2.4 and newer.
fn no_pull_handler() -> Handler {
    Handler::parse(&format!("{SANDBOX_HANDLER},DisablePauseImagePull=true")).unwrap()
}

fn with_no_pull_handler(version: Version) -> Settings {
    let mut s = critest_settings(version);
    s.cri.as_mut().unwrap().handlers.push(no_pull_handler());
    s
}

#[test]
fn handlers_parse_with_the_pause_pull_switch() {
    let h = no_pull_handler();
    assert!(h.disable_pause_image_pull);
    assert_eq!(h.sandboxer.as_deref(), Some("shim"));
    let on = Handler::parse(&format!("{SANDBOX_HANDLER},DisablePauseImagePull=false")).unwrap();
    assert!(!on.disable_pause_image_pull);
    assert!(
        !Handler::parse(SANDBOX_HANDLER)
            .unwrap()
            .disable_pause_image_pull
    );
}

#[test]
fn the_pause_pull_switch_is_the_handler_s_key_on_2_4() {
    for version in ["2.4.0", "2.4.2"] {
        let r = render(
            &with_no_pull_handler(v(version)),
            v(version),
            Path::new(TMP),
        )
        .unwrap();
        // In the handler's own table, under the exact key containerd 2.4
        // reads (internal/cri/config/config.go, Runtime.DisablePauseImagePull).
        let section = handler_table(&r.config);
        assert!(
            section.contains(&"disable_pause_image_pull = true"),
            "{version}: no disable_pause_image_pull line under {SANDBOX_TABLE}:\n{}",
            r.config
        );
        let runtimes =
            &parsed(&r.config)["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"];
        let want = toml::from_str::<toml::Value>(&format!(
            "runtime_type = \"io.containerd.tether.v2\"\n\
             runtime_path = \"{TMP}/bin/containerd-shim-tether-v2\"\n\
             sandboxer = \"shim\"\n\
             disable_pause_image_pull = true"
        ))
        .unwrap();
        assert_eq!(runtimes["tether-sandbox"], want, "{version}:\n{}", r.config);
        for h in ["runc", "tether", "tether-crun", "tether-wrapped"] {
            let key = runtimes[h].get("disable_pause_image_pull");
            assert!(key.is_none(), "{version} {h}");
        }
    }
    // Off (the default), the key is left out, as containerd's default.
    let r = render(
        &with_sandbox_handler(v("2.4.2")),
        v("2.4.2"),
        Path::new(TMP),
    )
    .unwrap();
    assert!(
        !r.config.contains("disable_pause_image_pull"),
        "{}",
        r.config
    );
}

#[test]
fn the_pause_pull_switch_is_refused_before_2_4() {
    for version in ["1.6.20", "1.7.35", "2.0.14", "2.3.7"] {
        let mut s = with_no_pull_handler(v(version));
        if version.starts_with('1') {
            // 1.x would refuse the sandboxer first; the switch alone is refused too.
            s.cri
                .as_mut()
                .unwrap()
                .handlers
                .last_mut()
                .unwrap()
                .sandboxer = None;
        }
        let err = render(&s, v(version), Path::new(TMP)).expect_err("no such switch");
        assert!(
            matches!(&err, ConfigError::NoPausePullSwitch { handler, .. } if handler == "tether-sandbox"),
            "{version}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("tether-sandbox") && text.contains("needs containerd 2.4 or newer"),
            "{text}"
        );
    }
}
