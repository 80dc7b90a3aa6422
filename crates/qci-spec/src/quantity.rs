//! Resource quantities (`0.5`, `500m`, `256Mi`, `1G`), kept as the user wrote them and parsed on use.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A quantity exactly as written: a number or a string. Validation parses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity(pub String);

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a number or a quantity string such as \"256Mi\"")
        })? {
            Raw::Int(i) => Ok(Quantity(i.to_string())),
            Raw::Float(f) => Ok(Quantity(f.to_string())),
            Raw::Str(s) => Ok(Quantity(s)),
        }
    }
}

/// CPU cores as thousandths of a core: `0.5` and `500m` both give 500.
pub fn parse_cpu_millis(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "invalid cpu quantity {s:?}: use cores such as 0.5 or 2, or millicores such as 500m"
        )
    };
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u64>().map_err(|_| bad());
    }
    let v: f64 = s.parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    let millis = v * 1000.0;
    if (millis - millis.round()).abs() > 1e-6 {
        return Err(format!(
            "invalid cpu quantity {s:?}: finer than 1m (0.001 cores)"
        ));
    }
    Ok(millis.round() as u64)
}

/// Memory in bytes: binary suffixes (Ki, Mi, Gi, Ti), decimal ones (k, K, M, G, T) or plain bytes.
pub fn parse_memory_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "invalid memory quantity {s:?}: use a byte count or a number with a suffix such as 256Mi, 1Gi or 512M"
        )
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let mult: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("memory quantity {s:?} is too large"));
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let bytes = f * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("memory quantity {s:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("2"), Ok(2000));
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        assert!(parse_cpu_millis("0.0001").is_err());
        assert!(parse_cpu_millis("-1").is_err());
        assert!(parse_cpu_millis("one").is_err());
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory_bytes("256Mi"), Ok(256 << 20));
        assert_eq!(parse_memory_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_memory_bytes("512M"), Ok(512_000_000));
        assert_eq!(parse_memory_bytes("1024"), Ok(1024));
        assert!(parse_memory_bytes("12Mb").is_err());
        assert!(parse_memory_bytes("Mi").is_err());
        assert!(parse_memory_bytes("99999999999Ti").is_err());
    }
}
