//! Sizes in config: a number of bytes, or a number with `KiB`, `MiB`, `GiB`, `KB`,
//! `MB` or `GB` (`64MiB`, `10GiB`).
//!
//! Written here rather than taken from a crate, like [`super::duration`]: a dozen
//! lines, and the format is ours to document.

use serde::{Deserialize, Deserializer};

/// Parses `65536`, `64KiB`, `10GiB`, `5MB`.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("invalid size {text:?}: expected e.g. 64MiB, 10GiB"))?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => return Err(format!("invalid size unit {other:?} in {text:?}: use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    Ok((n * factor) as u64)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Bytes(u64),
    Text(String),
}

/// Serde adapter: `#[serde(with = "size")]`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    match Raw::deserialize(deserializer)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

/// Serde adapter for an optional size: `#[serde(default, with = "size::option")]`.
pub mod option {
    use serde::{Deserialize, Deserializer};

    /// `null` or absent: `None`; else as [`super::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] u64);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("8KiB"), Ok(8192));
        assert_eq!(parse("64MiB"), Ok(64 << 20));
        assert_eq!(parse("2GB"), Ok(2_000_000_000));
        assert!(parse("10 parsecs").is_err());
        assert!(parse("lots").is_err());
    }
}
