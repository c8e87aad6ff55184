//! Records the commit `-info` reports as the revision, when built from a git
//! tree. The wire types are generated in the tether-proto crate.

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(o) = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
    {
        let rev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !rev.is_empty() {
            println!("cargo:rustc-env=TETHER_REVISION={rev}");
        }
    }
}
