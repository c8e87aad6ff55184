//! Command-line values tetherctl reads: sizes and users.

use anyhow::{Context, Result};

/// A user as `--user` takes it: `UID[:GID]` (GID 0 when left out).
pub fn parse_user(s: &str) -> Result<(u32, u32)> {
    let (u, g) = s.split_once(':').unwrap_or((s, "0"));
    let uid = u
        .parse()
        .with_context(|| format!("invalid user {s:?}: UID[:GID] expected"))?;
    let gid = g
        .parse()
        .with_context(|| format!("invalid user {s:?}: UID[:GID] expected"))?;
    Ok((uid, gid))
}

/// A size as `docker run -m` takes it: a number of bytes, or a number with
/// b, k, m or g (any case, 1024-based, an optional trailing "b" after the
/// unit).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size (bytes, or a number with k, m or g)");
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_as_docker_takes_them() {
        assert_eq!(parse_size("33554432"), Ok(32 << 20));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("32m"), Ok(32 << 20));
        assert_eq!(parse_size("32mb"), Ok(32 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("100b"), Ok(100));
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("12x").is_err());
    }
}
