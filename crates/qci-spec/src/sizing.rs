//! Group sizes: what a group asks for, normalised **up** to the smallest supported spec, and
//! what that costs. The default table is Alibaba ECI's; `qci serve --spec-table FILE` replaces it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::GroupSpec;
use crate::quantity::{parse_cpu_millis, parse_memory_bytes};

const GIB: u64 = 1 << 30;

/// One supported CPU size and the memory sizes that go with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecRow {
    /// Cores, e.g. 0.25, 1, 2.
    pub cpu: f64,
    /// Memory sizes in GiB (a list; `min..max` in the file lists whole GiB).
    pub memory_gib: Vec<f64>,
}

/// Prices per hour, for showing and metering.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub core_hour: f64,
    pub gib_hour: f64,
}

/// The supported specs (and prices), as a config file gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecTable {
    pub specs: Vec<SpecRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Prices>,
}

impl Default for SpecTable {
    /// Alibaba ECI's: 0.25 → 0.5/1 GiB; 0.5 → 1/2; 1 → 2/4/8; 2 → 4..16; 4 → 8..32;
    /// 8 → 16..64; 16 → 32..128; 32 → 64..256 (ranges in whole GiB).
    fn default() -> Self {
        let range = |a: u32, b: u32| (a..=b).map(f64::from).collect::<Vec<_>>();
        SpecTable {
            specs: vec![
                SpecRow {
                    cpu: 0.25,
                    memory_gib: vec![0.5, 1.0],
                },
                SpecRow {
                    cpu: 0.5,
                    memory_gib: vec![1.0, 2.0],
                },
                SpecRow {
                    cpu: 1.0,
                    memory_gib: vec![2.0, 4.0, 8.0],
                },
                SpecRow {
                    cpu: 2.0,
                    memory_gib: range(4, 16),
                },
                SpecRow {
                    cpu: 4.0,
                    memory_gib: range(8, 32),
                },
                SpecRow {
                    cpu: 8.0,
                    memory_gib: range(16, 64),
                },
                SpecRow {
                    cpu: 16.0,
                    memory_gib: range(32, 128),
                },
                SpecRow {
                    cpu: 32.0,
                    memory_gib: range(64, 256),
                },
            ],
            prices: None,
        }
    }
}

/// A group's size: as asked and as normalised (and metered).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupResources {
    /// Cores asked for: the group's own `cpu`, else the larger of its work containers' sum
    /// and its biggest init container.
    pub requested_cpu: f64,
    pub requested_memory_bytes: u64,
    /// The smallest supported spec that holds the request.
    pub cpu: f64,
    pub memory_bytes: u64,
    /// What an hour of it costs, when prices are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_hour: Option<f64>,
}

impl SpecTable {
    /// Parses a table from YAML or JSON; rows are checked and sorted.
    pub fn parse(text: &str) -> Result<SpecTable, String> {
        let mut t: SpecTable = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if t.specs.is_empty() {
            return Err("specs: at least one spec is required".into());
        }
        for (i, r) in t.specs.iter_mut().enumerate() {
            let positive = |v: f64| v.is_finite() && v > 0.0;
            if !positive(r.cpu)
                || r.memory_gib.is_empty()
                || !r.memory_gib.iter().all(|m| positive(*m))
            {
                return Err(format!(
                    "specs[{i}]: cpu and every memory_gib must be more than 0"
                ));
            }
            r.memory_gib.sort_by(f64::total_cmp);
        }
        t.specs.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
        Ok(t)
    }

    /// Normalises a request up to the smallest spec that holds it: the fewest cores, then the
    /// least memory. A request above every spec is an error naming the largest.
    pub fn normalize(&self, cpu: f64, memory_bytes: u64) -> Result<(f64, u64), String> {
        for row in &self.specs {
            if row.cpu + 1e-9 < cpu {
                continue;
            }
            if let Some(m) = row
                .memory_gib
                .iter()
                .find(|m| (**m * GIB as f64) as u64 >= memory_bytes)
            {
                return Ok((row.cpu, (*m * GIB as f64) as u64));
            }
        }
        let big = self
            .specs
            .iter()
            .map(|r| (r.cpu, r.memory_gib.last().copied().unwrap_or(0.0)))
            .fold((0.0_f64, 0.0_f64), |a, b| (a.0.max(b.0), a.1.max(b.1)));
        Err(format!(
            "asks for {cpu} cores and {:.2} GiB, more than the largest supported spec ({} cores, {} GiB)",
            memory_bytes as f64 / GIB as f64,
            big.0,
            big.1
        ))
    }

    /// The group's resources, or why it cannot be sized.
    /// [`SpecTable::size`] with the error on the field at fault, and the rule that the shared
    /// /dev/shm (which counts against the group's memory) is under half of it.
    pub fn size_checked(&self, spec: &GroupSpec) -> Result<GroupResources, crate::FieldError> {
        let r = self.size(spec).map_err(|message| {
            let (cpu, _) = requested(spec);
            let max_cpu = self.specs.iter().map(|r| r.cpu).fold(0.0, f64::max);
            let field = match (
                cpu > max_cpu + 1e-9,
                spec.cpu.is_some(),
                spec.memory.is_some(),
            ) {
                (true, true, _) => "cpu",
                (false, _, true) => "memory",
                _ => "containers",
            };
            crate::FieldError::new(field, format!("the group {message}"))
        })?;
        if let Some(shm) = spec
            .shm_size
            .as_ref()
            .and_then(|q| parse_memory_bytes(&q.0).ok())
            && shm.saturating_mul(2) >= r.memory_bytes
        {
            return Err(crate::FieldError::new(
                "shm_size",
                format!(
                    "must be less than half the group's memory ({} MiB, the size it is held to): /dev/shm is memory",
                    r.memory_bytes >> 20
                ),
            ));
        }
        Ok(r)
    }

    pub fn size(&self, spec: &GroupSpec) -> Result<GroupResources, String> {
        let (cpu, mem) = requested(spec);
        let (ncpu, nmem) = self.normalize(cpu, mem)?;
        let price_per_hour = self
            .prices
            .as_ref()
            .map(|p| ncpu * p.core_hour + nmem as f64 / GIB as f64 * p.gib_hour);
        Ok(GroupResources {
            requested_cpu: cpu,
            requested_memory_bytes: mem,
            cpu: ncpu,
            memory_bytes: nmem,
            price_per_hour,
        })
    }
}

/// A group's metered use over a time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// The tenant that owns the group.
    #[serde(default)]
    pub tenant: String,
    pub group_id: String,
    pub name: String,
    /// Normalised cores × seconds.
    pub core_seconds: f64,
    /// Normalised GiB × seconds.
    pub gib_seconds: f64,
    /// At the prices configured when it ran, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// What a group asks for, in cores and bytes.
pub fn requested(spec: &GroupSpec) -> (f64, u64) {
    let cpu = |c: &crate::ContainerSpec| {
        c.cpu
            .as_ref()
            .and_then(|q| parse_cpu_millis(&q.0).ok())
            .unwrap_or(0)
    };
    let mem = |c: &crate::ContainerSpec| {
        c.memory
            .as_ref()
            .and_then(|q| parse_memory_bytes(&q.0).ok())
            .unwrap_or(0)
    };
    let work_cpu: u64 = spec.containers.iter().map(cpu).sum();
    let work_mem: u64 = spec.containers.iter().map(mem).sum();
    let init_cpu = spec.init_containers.iter().map(cpu).max().unwrap_or(0);
    let init_mem = spec.init_containers.iter().map(mem).max().unwrap_or(0);
    let group_cpu = spec.cpu.as_ref().and_then(|q| parse_cpu_millis(&q.0).ok());
    let group_mem = spec
        .memory
        .as_ref()
        .and_then(|q| parse_memory_bytes(&q.0).ok());
    (
        group_cpu.unwrap_or(work_cpu.max(init_cpu)) as f64 / 1000.0,
        group_mem.unwrap_or(work_mem.max(init_mem)),
    )
}

/// What gVisor's own kernel takes beside a sandbox's containers (an idle sandbox with one
/// sleeping container uses about 22 MiB): added to their memory limits, as Kubernetes adds a
/// sandboxed runtime's overhead to a pod's.
pub const GVISOR_OVERHEAD_BYTES: u64 = 32 << 20;

/// The limits a group's gVisor sandbox is held to, from its containers' own: one sandbox runs
/// them all, so their limits cannot hold each container apart (runc's can); they add up instead,
/// as Kubernetes sizes a pod's cgroup — the work containers' sum, or the largest init container's
/// if more (those run alone, first), memory plus [`GVISOR_OVERHEAD_BYTES`] — never past the
/// group's size `(cpu_millis, memory_bytes)`. A dimension some container leaves unset is the
/// group's size.
pub fn sandbox_limits(spec: &GroupSpec, size: (u64, u64)) -> (u64, u64) {
    fn total(spec: &GroupSpec, of: impl Fn(&crate::ContainerSpec) -> Option<u64>) -> Option<u64> {
        let work: Option<u64> = spec.containers.iter().map(&of).sum();
        let init: Option<Vec<u64>> = spec.init_containers.iter().map(&of).collect();
        Some(work?.max(init?.into_iter().max().unwrap_or(0)))
    }
    let cpu = total(spec, |c| {
        c.cpu.as_ref().and_then(|q| parse_cpu_millis(&q.0).ok())
    });
    let mem = total(spec, |c| {
        c.memory
            .as_ref()
            .and_then(|q| parse_memory_bytes(&q.0).ok())
    });
    (
        cpu.map_or(size.0, |c| c.min(size.0)),
        mem.map_or(size.1, |m| (m + GVISOR_OVERHEAD_BYTES).min(size.1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_is_held_to_its_containers_limits_added_up() {
        const MIB: u64 = 1 << 20;
        let size = (1000, 2 * GIB);
        let limits = |containers: &str| {
            let spec = crate::parse_spec(&format!("name: g\n{containers}")).unwrap();
            sandbox_limits(&spec, size)
        };
        let over = GVISOR_OVERHEAD_BYTES;
        for (containers, want) in [
            // Every container limited: the sum (memory plus gVisor's own).
            (
                "containers: [{name: a, image: bb, cpu: 0.1, memory: 64Mi}, {name: b, image: bb, cpu: 200m, memory: 100Mi}]",
                (300, 164 * MIB + over),
            ),
            // One without a memory limit: memory is the group's; cpu still adds up.
            (
                "containers: [{name: a, image: bb, cpu: 0.1, memory: 64Mi}, {name: b, image: bb, cpu: 0.1}]",
                (200, 2 * GIB),
            ),
            // An init container larger than the work containers together.
            (
                "init_containers: [{name: i, image: bb, cpu: 0.5, memory: 512Mi}]\ncontainers: [{name: a, image: bb, cpu: 0.1, memory: 64Mi}]",
                (500, 512 * MIB + over),
            ),
            // An init container without limits leaves the group's size.
            (
                "init_containers: [{name: i, image: bb}]\ncontainers: [{name: a, image: bb, cpu: 0.1, memory: 64Mi}]",
                (1000, 2 * GIB),
            ),
            // Never past the group's size.
            (
                "containers: [{name: a, image: bb, cpu: 2, memory: 3Gi}]",
                (1000, 2 * GIB),
            ),
            ("containers: [{name: a, image: bb}]", (1000, 2 * GIB)),
        ] {
            assert_eq!(limits(containers), want, "{containers}");
        }
    }

    #[test]
    fn normalises_up() {
        let t = SpecTable::default();
        assert_eq!(t.normalize(0.3, 700 << 20), Ok((0.5, GIB)));
        assert_eq!(t.normalize(0.0, 0), Ok((0.25, GIB / 2)));
        assert_eq!(t.normalize(1.0, 3 * GIB), Ok((1.0, 4 * GIB)));
        assert_eq!(t.normalize(1.0, 9 * GIB), Ok((2.0, 9 * GIB)));
        assert_eq!(t.normalize(3.0, GIB), Ok((4.0, 8 * GIB)));
        assert!(
            t.normalize(33.0, GIB)
                .unwrap_err()
                .contains("largest supported spec (32 cores, 256 GiB)")
        );
        assert!(t.normalize(1.0, 300 * GIB).is_err());
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let t = SpecTable::default();
        let field = |yaml: &str| {
            let spec = crate::parse_spec(yaml).unwrap();
            t.size_checked(&spec)
                .map(|r| r.memory_bytes >> 20)
                .map_err(|e| e.to_string())
        };
        let c = "containers: [{name: a, image: bb}]";
        assert!(
            field(&format!("name: g\nmemory: 1000Ti\n{c}"))
                .unwrap_err()
                .starts_with("memory: the group asks for")
        );
        assert!(
            field(&format!("name: g\ncpu: 1000\n{c}"))
                .unwrap_err()
                .starts_with("cpu: the group asks for")
        );
        assert!(
            field("name: g\ncontainers: [{name: a, image: bb, memory: 1000Ti}]")
                .unwrap_err()
                .starts_with("containers: the group asks for")
        );
        // shm counts against the group's memory: under half of the size it is held to.
        assert!(
            field(&format!(
                "name: g\ncpu: 0.25\nmemory: 1Gi\nshm_size: 2Gi\n{c}"
            ))
            .unwrap_err()
            .starts_with("shm_size: must be less than half the group's memory (1024 MiB")
        );
        assert!(
            field(&format!("name: g\nshm_size: 256Mi\n{c}"))
                .unwrap_err()
                .starts_with("shm_size:"),
            "0.25 cores / 512 MiB by default"
        );
        assert_eq!(
            field(&format!("name: g\nmemory: 1Gi\nshm_size: 511Mi\n{c}")),
            Ok(1024)
        );
    }

    #[test]
    fn tables_from_files() {
        let t = SpecTable::parse("specs:\n  - {cpu: 2, memory_gib: [8, 4]}\n  - {cpu: 1, memory_gib: [2]}\nprices: {core_hour: 0.1, gib_hour: 0.01}\n").unwrap();
        assert_eq!(t.specs[0].cpu, 1.0);
        assert_eq!(t.normalize(1.5, GIB), Ok((2.0, 4 * GIB)));
        assert!(SpecTable::parse("specs: []").is_err());
    }
}

/// One reading of a container's resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricSample {
    pub time: chrono::DateTime<chrono::Utc>,
    pub container: String,
    /// Cores in use on average since the reading before (None for the first one).
    pub cpu_cores: Option<f64>,
    /// CPU time used since the container started.
    pub cpu_seconds_total: f64,
    /// Memory in use less inactive file cache.
    pub memory_bytes: u64,
    pub pids: u64,
    /// The group's network namespace, all interfaces, since it was made.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}
