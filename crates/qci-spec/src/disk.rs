//! Disks: block storage created beforehand, attached to one group at a time, whose data
//! outlives the groups that use it (the seed product's 数据盘).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::quantity::{Quantity, parse_memory_bytes};
use crate::validate::{FieldError, check_dns_label};

/// Disks are sized in whole MiB, from 16 MiB (ext4 needs room for its journal) to 64 TiB.
pub const MIN_DISK_BYTES: u64 = 16 << 20;
pub const MAX_DISK_BYTES: u64 = 64 << 40;

/// What a user asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// DNS label, unique among the owner's disks.
    pub name: String,
    /// e.g. "10Gi"; rounded up to a whole MiB.
    #[schema(value_type = String)]
    pub size: Quantity,
    /// A disk type of the server's compatibility table ("standard" by default).
    #[serde(default = "default_type", rename = "type")]
    pub disk_type: String,
}

fn default_type() -> String {
    "standard".into()
}

/// A grow request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskResize {
    /// The new size: larger than the current one.
    #[schema(value_type = String)]
    pub size: Quantity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DiskPhase {
    /// Its image is being made.
    Creating,
    #[default]
    Available,
    InUse,
    /// Its image is being removed; the disk then disappears.
    Deleting,
    /// Its image could not be made (the message says why); it can only be deleted.
    Failed,
}

impl std::fmt::Display for DiskPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Disk {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    /// Bytes.
    pub size: u64,
    #[serde(rename = "type")]
    pub disk_type: String,
    pub phase: DiskPhase,
    /// The group it is attached to, while InUse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Anything the user should know, such as a growth that waits for the next attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A disk size in bytes, rounded up to a whole MiB and within the limits.
pub fn disk_bytes(q: &Quantity) -> Result<u64, String> {
    let b = parse_memory_bytes(&q.0)?;
    let b = b.div_ceil(1 << 20) * (1 << 20);
    if !(MIN_DISK_BYTES..=MAX_DISK_BYTES).contains(&b) {
        return Err(format!(
            "{:?} is outside the disk sizes qci supports (16Mi to 64Ti)",
            q.0
        ));
    }
    Ok(b)
}

/// Checks a disk spec against the compatibility table's disk types.
pub fn validate_disk(spec: &DiskSpec, compat: &DiskCompat) -> Result<u64, Vec<FieldError>> {
    let mut errs = Vec::new();
    if let Err(m) = check_dns_label(&spec.name) {
        errs.push(FieldError::new("name", m));
    }
    let size = disk_bytes(&spec.size).map_err(|m| errs.push(FieldError::new("size", m)));
    let types = compat.disk_types();
    if !types.contains(&spec.disk_type.as_str()) {
        errs.push(FieldError::new(
            "type",
            format!(
                "unknown disk type {:?}; this server offers {}",
                spec.disk_type,
                types.join(", ")
            ),
        ));
    }
    match size {
        Ok(b) if errs.is_empty() => Ok(b),
        _ => Err(errs),
    }
}

/// Which disk types each instance type can attach: the server's compatibility table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct DiskCompat(pub BTreeMap<String, Vec<String>>);

/// A group's instance type when it names none.
pub const DEFAULT_INSTANCE_TYPE: &str = "standard";

impl Default for DiskCompat {
    /// standard instances take standard disks; performance instances take both.
    fn default() -> Self {
        DiskCompat(BTreeMap::from([
            ("standard".to_string(), vec!["standard".to_string()]),
            (
                "performance".to_string(),
                vec!["standard".to_string(), "performance".to_string()],
            ),
        ]))
    }
}

impl DiskCompat {
    /// Every disk type the table mentions.
    pub fn disk_types(&self) -> Vec<&str> {
        let mut t: Vec<&str> = self.0.values().flatten().map(String::as_str).collect();
        t.sort();
        t.dedup();
        t
    }

    pub fn instance_types(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    /// Whether `instance_type` can use a disk of `disk_type`; else why not.
    pub fn check(&self, instance_type: &str, disk_type: &str) -> Result<(), String> {
        let Some(fits) = self.0.get(instance_type) else {
            return Err(format!(
                "unknown instance_type {instance_type:?}; this server offers {}",
                self.instance_types().join(", ")
            ));
        };
        if fits.iter().any(|t| t == disk_type) {
            return Ok(());
        }
        let can: Vec<&str> = self
            .0
            .iter()
            .filter(|(_, d)| d.iter().any(|t| t == disk_type))
            .map(|(i, _)| i.as_str())
            .collect();
        Err(format!(
            "a {disk_type} disk cannot be attached to instance_type {instance_type:?}, which takes {} disks; instance types that take {disk_type} disks: {}",
            fits.join(" or "),
            if can.is_empty() {
                "none".to_string()
            } else {
                can.join(", ")
            }
        ))
    }

    /// Checks a table read from a file.
    pub fn validate(&self) -> Result<(), String> {
        if self.0.is_empty() {
            return Err("the disk compatibility table is empty".into());
        }
        for (i, d) in &self.0 {
            check_dns_label(i).map_err(|m| format!("instance type {i:?}: {m}"))?;
            for t in d {
                check_dns_label(t).map_err(|m| format!("disk type {t:?}: {m}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_mib_within_limits() {
        assert_eq!(disk_bytes(&Quantity("20Mi".into())).unwrap(), 20 << 20);
        assert_eq!(
            disk_bytes(&Quantity("20000001".into())).unwrap(),
            20 << 20,
            "19.07 MiB rounds up to 20 MiB"
        );
        assert!(
            disk_bytes(&Quantity("1Mi".into()))
                .unwrap_err()
                .contains("16Mi")
        );
        assert!(disk_bytes(&Quantity("65Ti".into())).is_err());
        assert!(disk_bytes(&Quantity("lots".into())).is_err());
    }

    #[test]
    fn compat_table_names_what_fits() {
        let c = DiskCompat::default();
        assert!(c.check("standard", "standard").is_ok());
        assert!(c.check("performance", "standard").is_ok());
        let e = c.check("standard", "performance").unwrap_err();
        assert!(
            e.contains("instance types that take performance disks: performance"),
            "{e}"
        );
        assert!(
            c.check("gpu", "standard")
                .unwrap_err()
                .contains("unknown instance_type")
        );
        assert_eq!(c.disk_types(), vec!["performance", "standard"]);
    }

    #[test]
    fn disk_specs_are_checked_field_by_field() {
        let c = DiskCompat::default();
        let bad = DiskSpec {
            name: "Bad_Name".into(),
            size: Quantity("1Ki".into()),
            disk_type: "ssd".into(),
        };
        let errs = validate_disk(&bad, &c).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["name", "size", "type"]);
        let good = DiskSpec {
            name: "data".into(),
            size: Quantity("1Gi".into()),
            disk_type: "standard".into(),
        };
        assert_eq!(validate_disk(&good, &c).unwrap(), 1 << 30);
    }
}
