//! Kubernetes manifests in and out: a `v1` Pod, with the ConfigMaps, Secrets and
//! PersistentVolumeClaims it uses (multi-document YAML or a `kind: List`), becomes a group
//! spec; a group spec becomes a Pod and its ConfigMaps again.
//!
//! qci's spec is Kubernetes' shape in snake_case, so most fields map one to one. What qci
//! cannot do is never dropped: a field it does not support is an error naming its path in
//! the manifest (`spec.containers[0].lifecycle`), or with `lenient` a warning. Metadata with
//! no behaviour (labels, other annotations, a namespace) gives a warning. qci's own settings
//! come as annotations: `qci.io/eip`, `qci.io/vpc`, `qci.io/firewall`, `qci.io/image-cache`,
//! `qci.io/instance-type`.
//!
//! From the other documents: a ConfigMap's `data` becomes config files (volumes) or env
//! values; a Secret's `data` (base64) or `stringData` the same; a
//! `kubernetes.io/dockerconfigjson` Secret named in `imagePullSecrets` becomes registry
//! credentials; a PersistentVolumeClaim names a disk (made with the claim's size when
//! missing: see [`Converted::disks`]).

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::group::GroupSpec;
use crate::validate::FieldError;

/// A manifest turned into a group spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub spec: GroupSpec,
    /// Disks the Pod's claims name, with the size each claim asks for (bytes): to be made
    /// before the group when they do not exist.
    pub disks: Vec<(String, u64)>,
    /// What was accepted but has no effect, or (lenient) left out.
    pub warnings: Vec<String>,
}

/// Whether a document is a Kubernetes object (it has `apiVersion` and `kind`).
pub fn is_kube(text: &str) -> bool {
    let Some(first) = serde_yaml::Deserializer::from_str(text).next() else {
        return false;
    };
    let v: Result<Value, _> = serde::Deserialize::deserialize(first);
    v.ok().is_some_and(|v| {
        v.get("apiVersion").is_some_and(Value::is_string)
            && v.get("kind").is_some_and(Value::is_string)
    })
}

/// qci's settings that Kubernetes has no field for, as annotations: (annotation, field of
/// the group spec; `network.` ones go into its network).
const ANNOTATIONS: [(&str, &str); 9] = [
    ("qci.io/eip", "network.eip"),
    ("qci.io/vpc", "network.vpc"),
    ("qci.io/firewall", "network.firewall"),
    ("qci.io/network-mode", "network.mode"),
    ("qci.io/image-cache", "image_cache"),
    ("qci.io/instance-type", "instance_type"),
    ("qci.io/cpu", "cpu"),
    ("qci.io/memory", "memory"),
    ("qci.io/shm-size", "shm_size"),
];

/// Turns the manifest's Pod (and what it uses) into a group spec, checked as any spec is.
pub fn from_manifests(text: &str, lenient: bool) -> Result<Converted, Vec<FieldError>> {
    crate::budget::prescan(text).map_err(|e| vec![e])?;
    let mut docs = Vec::new();
    for (i, d) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(d).map_err(|e| {
            vec![FieldError::new(
                format!("document {}", i + 1),
                e.to_string(),
            )]
        })?;
        match v.get("kind").and_then(Value::as_str) {
            Some("List") => {
                for item in v
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    docs.push(item.clone());
                }
            }
            _ if v.is_null() => {}
            _ => docs.push(v),
        }
    }
    let mut c = Ctx {
        errs: Vec::new(),
        warnings: Vec::new(),
        lenient,
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
        claims: BTreeMap::new(),
    };
    let mut pods = Vec::new();
    for d in &docs {
        let kind = d.get("kind").and_then(Value::as_str).unwrap_or("");
        let api = d.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let name = d
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if api != "v1" {
            c.errs.push(FieldError::new(
                format!("{kind} {name}: apiVersion"),
                format!("{api:?}: qci reads v1 objects"),
            ));
            continue;
        }
        match kind {
            "Pod" => pods.push(d),
            "ConfigMap" => {
                let data = c.string_map(d, "data", &format!("ConfigMap {name}"), false);
                c.config_maps.insert(name, data);
            }
            "Secret" => {
                let path = format!("Secret {name}");
                let mut data = c.string_map(d, "data", &path, true);
                data.extend(c.string_map(d, "stringData", &path, false));
                let kind = d
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("Opaque")
                    .to_string();
                c.secrets.insert(name, (kind, data));
            }
            "PersistentVolumeClaim" => {
                let size = d
                    .pointer("/spec/resources/requests/storage")
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default();
                match crate::parse_memory_bytes(&size) {
                    Ok(b) => {
                        c.claims.insert(name, b);
                    }
                    Err(e) => c.errs.push(FieldError::new(
                        format!("PersistentVolumeClaim {name}: spec.resources.requests.storage"),
                        e,
                    )),
                }
            }
            other => c.errs.push(FieldError::new(
                format!("{other} {name}"),
                "qci reads Pods, and the ConfigMaps, Secrets and PersistentVolumeClaims they use",
            )),
        }
    }
    if pods.len() != 1 {
        c.errs.push(FieldError::new(
            "kind",
            format!("the manifest must hold one Pod (it holds {})", pods.len()),
        ));
        return Err(c.errs);
    }
    let (spec, disks) = c.pod(pods[0]);
    if !c.errs.is_empty() {
        return Err(c.errs);
    }
    let spec = crate::parse_spec(&spec.to_string()).map_err(|e| e.fields())?;
    Ok(Converted {
        spec,
        disks,
        warnings: c.warnings,
    })
}

struct Ctx {
    errs: Vec<FieldError>,
    warnings: Vec<String>,
    lenient: bool,
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// (type, data)
    secrets: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// Claim name → bytes asked for.
    claims: BTreeMap<String, u64>,
}

/// An object being read: the keys taken are remembered, and the rest reported at the end.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    used: HashSet<&'static str>,
}

impl<'a> Obj<'a> {
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }
    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl Ctx {
    fn obj<'a>(&mut self, v: &'a Value, path: &str) -> Option<Obj<'a>> {
        match v.as_object() {
            Some(map) => Some(Obj {
                map,
                path: path.to_string(),
                used: HashSet::new(),
            }),
            None => {
                self.errs.push(FieldError::new(path, "must be an object"));
                None
            }
        }
    }

    /// A file mode; an error naming it when it is not one.
    fn mode(&mut self, v: &Value, path: &str) -> Option<String> {
        let m = mode_of(v);
        if m.is_none() {
            self.errs.push(FieldError::new(
                path,
                format!("{v}: not a file mode (such as 0644 or 420)"),
            ));
        }
        m
    }

    /// A list of the manifest; an error naming it when it is something else.
    fn list<'a>(&mut self, v: &'a Value, path: &str) -> &'a [Value] {
        match v.as_array() {
            Some(a) => a,
            None => {
                self.errs.push(FieldError::new(path, "must be a list"));
                &[]
            }
        }
    }

    /// Reports the keys of `o` nothing took.
    fn done(&mut self, o: Obj<'_>) {
        for k in o.map.keys() {
            if !o.used.contains(k.as_str()) {
                self.unsupported(&o.at(k), "qci does not support this field");
            }
        }
    }

    fn unsupported(&mut self, path: &str, why: &str) {
        if self.lenient {
            self.warnings
                .push(format!("{path}: {why}; left out (--lenient)"));
        } else {
            self.errs.push(FieldError::new(
                path,
                format!("{why} (--lenient leaves it out with a warning)"),
            ));
        }
    }

    fn string_map(
        &mut self,
        d: &Value,
        key: &str,
        path: &str,
        base64: bool,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(m) = d.get(key).and_then(Value::as_object) else {
            return out;
        };
        for (k, v) in m {
            let Some(s) = v.as_str() else {
                self.errs.push(FieldError::new(
                    format!("{path}: {key}.{k}"),
                    "must be a string",
                ));
                continue;
            };
            if base64 {
                match base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                {
                    Some(t) => {
                        out.insert(k.clone(), t);
                    }
                    None => self.errs.push(FieldError::new(
                        format!("{path}: {key}.{k}"),
                        "not base64 of UTF-8 text",
                    )),
                }
            } else {
                out.insert(k.clone(), s.to_string());
            }
        }
        out
    }

    fn pod(&mut self, pod: &Value) -> (Value, Vec<(String, u64)>) {
        let mut g = Map::new();
        let Some(mut top) = self.obj(pod, "") else {
            return (Value::Null, vec![]);
        };
        top.get("apiVersion");
        top.get("kind");
        if let Some(meta) = top.get("metadata")
            && let Some(mut m) = self.obj(meta, "metadata")
        {
            if let Some(n) = m.get("name") {
                g.insert("name".into(), n.clone());
            }
            if let Some(ns) = m.get("namespace").and_then(Value::as_str) {
                self.warnings.push(format!(
                    "metadata.namespace {ns:?}: qci has tenants, not namespaces; the group is in the key's tenant"
                ));
            }
            if m.get("labels").is_some() {
                self.warnings
                    .push("metadata.labels: qci keeps no labels".into());
            }
            if let Some(a) = m.get("annotations").and_then(Value::as_object) {
                let mut network = Map::new();
                for (k, v) in a {
                    match ANNOTATIONS.iter().find(|(name, _)| name == k) {
                        Some((_, field)) => match field.strip_prefix("network.") {
                            Some(n) => {
                                network.insert(n.into(), v.clone());
                            }
                            None => {
                                g.insert((*field).into(), v.clone());
                            }
                        },
                        None => self.warnings.push(format!(
                            "metadata.annotations.{k}: not one of qci's ({}); kept nowhere",
                            ANNOTATIONS.map(|(a, _)| a).join(", ")
                        )),
                    }
                }
                if !network.is_empty() {
                    g.insert("network".into(), Value::Object(network));
                }
            }
            m.get("uid");
            m.get("creationTimestamp");
            m.get("resourceVersion");
            self.done(m);
        }
        let mut disks = Vec::new();
        if let Some(spec) = top.get("spec")
            && let Some(mut s) = self.obj(spec, "spec")
        {
            if let Some(p) = s.get("restartPolicy") {
                g.insert("restart_policy".into(), p.clone());
            }
            // A RuntimeClass by the names clusters give gVisor's (`gvisor` on GKE, `runsc`).
            if let Some(r) = s.get("runtimeClassName") {
                match r.as_str() {
                    Some("gvisor" | "runsc") => {
                        g.insert("runtime".into(), json!("gvisor"));
                    }
                    Some("runc") => {
                        g.insert("runtime".into(), json!("runc"));
                    }
                    _ => self.unsupported(
                        "spec.runtimeClassName",
                        "qci's runtimes are runc and gvisor (also called runsc)",
                    ),
                }
            }
            if let Some(t) = s.get("terminationGracePeriodSeconds") {
                g.insert("termination_grace_period_seconds".into(), t.clone());
            }
            // Volumes first: a read-only claim makes its mounts read-only.
            let mut read_only_claims = HashSet::new();
            if let Some(vs) = s.get("volumes") {
                let vols = self.volumes(vs, &mut disks, &mut read_only_claims);
                g.insert("volumes".into(), Value::Array(vols));
            }
            for (key, field) in [
                ("initContainers", "init_containers"),
                ("containers", "containers"),
            ] {
                if let Some(cs) = s.get(key) {
                    let path = format!("spec.{key}");
                    let list: Vec<Value> = self
                        .list(cs, &path)
                        .iter()
                        .enumerate()
                        .map(|(i, c)| self.container(c, &format!("{path}[{i}]"), &read_only_claims))
                        .collect();
                    g.insert(field.into(), Value::Array(list));
                }
            }
            if let Some(ps) = s.get("imagePullSecrets") {
                let creds = self.pull_secrets(ps);
                g.insert("registry_credentials".into(), Value::Array(creds));
            }
            if let Some(sc) = s.get("securityContext") {
                let v = self.security(sc, "spec.securityContext", true);
                g.insert("security_context".into(), v);
            }
            // What `kubectl get -o yaml` writes for every Pod, with the value qci has anyway.
            for (k, default) in [
                ("dnsPolicy", "ClusterFirst"),
                ("schedulerName", "default-scheduler"),
                ("enableServiceLinks", "true"),
                ("preemptionPolicy", "PreemptLowerPriority"),
            ] {
                if let Some(v) = s.get(k) {
                    let same = v.as_str() == Some(default)
                        || v.as_bool().map(|b| b.to_string()).as_deref() == Some(default);
                    if !same {
                        self.unsupported(&format!("spec.{k}"), "qci has only the default");
                    }
                }
            }
            self.done(s);
        }
        top.get("status");
        self.done(top);
        (Value::Object(g), disks)
    }

    fn volumes(
        &mut self,
        vs: &Value,
        disks: &mut Vec<(String, u64)>,
        read_only_claims: &mut HashSet<String>,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        for (i, v) in self.list(vs, "spec.volumes").iter().enumerate() {
            let path = format!("spec.volumes[{i}]");
            let Some(mut o) = self.obj(v, &path) else {
                continue;
            };
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut vol = json!({"name": name});
            if let Some(cm) = o.get("configMap") {
                if let Some(files) = self.data_volume(cm, &format!("{path}.configMap"), false) {
                    vol["config_file"] = json!({"files": files});
                }
            } else if let Some(sec) = o.get("secret") {
                if let Some(files) = self.data_volume(sec, &format!("{path}.secret"), true) {
                    vol["config_file"] = json!({"files": files});
                }
            } else if let Some(ed) = o.get("emptyDir") {
                let p = format!("{path}.emptyDir");
                if let Some(mut c) = self.obj(ed, &p) {
                    let mut e = json!({});
                    if let Some(m) = c.get("medium") {
                        e["medium"] = m.clone();
                    }
                    if let Some(sz) = c.get("sizeLimit") {
                        e["size_limit"] = sz.clone();
                    }
                    self.done(c);
                    vol["empty_dir"] = e;
                }
            } else if let Some(pvc) = o.get("persistentVolumeClaim") {
                let p = format!("{path}.persistentVolumeClaim");
                if let Some(mut c) = self.obj(pvc, &p) {
                    let claim = c
                        .get("claimName")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if c.get("readOnly").and_then(Value::as_bool) == Some(true) {
                        read_only_claims.insert(name.clone());
                    }
                    self.done(c);
                    match self.claims.get(&claim) {
                        Some(size) => {
                            if !disks.iter().any(|(d, _)| d == &claim) {
                                disks.push((claim.clone(), *size));
                            }
                        }
                        // A disk made beforehand (`qci disk create`) may be named directly.
                        None => self.warnings.push(format!(
                            "{p}.claimName {claim:?}: no PersistentVolumeClaim in the manifest; the disk {claim:?} must exist"
                        )),
                    }
                    vol["disk"] = json!({"id": claim});
                }
            }
            self.done(o);
            out.push(vol);
        }
        out
    }

    /// A `configMap` (or, with `secret`, a `secret`) volume: the files of the ConfigMap or
    /// Secret of the manifest it names.
    fn data_volume(&mut self, v: &Value, p: &str, secret: bool) -> Option<Vec<Value>> {
        let mut c = self.obj(v, p)?;
        let (key, kind) = if secret {
            ("secretName", "Secret")
        } else {
            ("name", "ConfigMap")
        };
        let src = c.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let data = if secret {
            self.secrets.get(&src).map(|(_, d)| d.clone())
        } else {
            self.config_maps.get(&src).cloned()
        };
        let files = match data {
            Some(d) => self.files(&mut c, &d, p),
            None => {
                self.errs.push(FieldError::new(
                    format!("{p}.{key}"),
                    format!("no {kind} {src:?} in the manifest"),
                ));
                vec![]
            }
        };
        c.get("optional");
        self.done(c);
        Some(files)
    }

    /// A ConfigMap's or Secret's entries as config files: all of them, or `items`.
    fn files(&mut self, c: &mut Obj<'_>, data: &BTreeMap<String, String>, p: &str) -> Vec<Value> {
        let mode = c
            .get("defaultMode")
            .and_then(|m| self.mode(m, &format!("{p}.defaultMode")));
        let file = |path: &str, content: &str, mode: &Option<String>| {
            let mut f = json!({"path": path, "content": content});
            if let Some(m) = mode {
                f["mode"] = json!(m);
            }
            f
        };
        match c.get("items") {
            None => data.iter().map(|(k, v)| file(k, v, &mode)).collect(),
            Some(items) => {
                let items = self.list(items, &format!("{p}.items"));
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    let ip = format!("{p}.items[{i}]");
                    let Some(mut o) = self.obj(it, &ip) else {
                        continue;
                    };
                    let key = o.get("key").and_then(Value::as_str).unwrap_or("");
                    let path = o.get("path").and_then(Value::as_str).unwrap_or(key);
                    let m = o
                        .get("mode")
                        .and_then(|m| self.mode(m, &format!("{ip}.mode")))
                        .or(mode.clone());
                    match data.get(key) {
                        Some(v) => out.push(file(path, v, &m)),
                        None => self.errs.push(FieldError::new(
                            format!("{ip}.key"),
                            format!("{key:?} is not in it"),
                        )),
                    }
                    self.done(o);
                }
                out
            }
        }
    }

    fn container(&mut self, c: &Value, path: &str, read_only_claims: &HashSet<String>) -> Value {
        let mut out = Map::new();
        let Some(mut o) = self.obj(c, path) else {
            return Value::Null;
        };
        for (k, to) in [
            ("name", "name"),
            ("image", "image"),
            ("command", "command"),
            ("args", "args"),
            ("workingDir", "working_dir"),
            ("imagePullPolicy", "image_pull_policy"),
            // qci's own, which `-o k8s` writes: not Kubernetes fields.
            ("pidsLimit", "pids_limit"),
            ("maxLogSize", "max_log_size"),
            ("stdin", "stdin"),
            ("tty", "tty"),
        ] {
            if let Some(v) = o.get(k) {
                out.insert(to.into(), v.clone());
            }
        }
        // Port names, for probes that name theirs.
        let mut port_names = BTreeMap::new();
        if let Some(ps) = o.get("ports") {
            let mut ports = Vec::new();
            for (i, p) in self.list(ps, &format!("{path}.ports")).iter().enumerate() {
                let pp = format!("{path}.ports[{i}]");
                let Some(mut po) = self.obj(p, &pp) else {
                    continue;
                };
                let port = po.get("containerPort").cloned().unwrap_or(Value::Null);
                if let Some(n) = po.get("name").and_then(Value::as_str) {
                    port_names.insert(n.to_string(), port.clone());
                }
                let mut x = json!({"port": port});
                if let Some(pr) = po.get("protocol") {
                    x["protocol"] = pr.clone();
                }
                self.done(po);
                ports.push(x);
            }
            out.insert("ports".into(), Value::Array(ports));
        }
        if let Some(env) = o.get("env") {
            let list = self.env(env, &format!("{path}.env"));
            out.insert("env".into(), Value::Array(list));
        }
        if let Some(r) = o.get("resources") {
            let rp = format!("{path}.resources");
            if let Some(mut ro) = self.obj(r, &rp) {
                // Limits are what is enforced; requests stand in where no limit is given.
                for which in ["requests", "limits"] {
                    if let Some(m) = ro.get(which) {
                        let wp = format!("{rp}.{which}");
                        if let Some(mut mo) = self.obj(m, &wp) {
                            for k in ["cpu", "memory"] {
                                if let Some(v) = mo.get(k) {
                                    out.insert(k.into(), v.clone());
                                }
                            }
                            self.done(mo);
                        }
                    }
                }
                self.done(ro);
            }
        }
        for (k, to) in [
            ("livenessProbe", "liveness_probe"),
            ("readinessProbe", "readiness_probe"),
            ("startupProbe", "startup_probe"),
        ] {
            if let Some(p) = o.get(k) {
                let v = self.probe(p, &format!("{path}.{k}"), &port_names);
                out.insert(to.into(), v);
            }
        }
        if let Some(vm) = o.get("volumeMounts") {
            let mut mounts = Vec::new();
            for (i, m) in self
                .list(vm, &format!("{path}.volumeMounts"))
                .iter()
                .enumerate()
            {
                let mp = format!("{path}.volumeMounts[{i}]");
                let Some(mut mo) = self.obj(m, &mp) else {
                    continue;
                };
                let name = mo.get("name").cloned().unwrap_or(Value::Null);
                let mut x = json!({"name": name, "mount_path": mo.get("mountPath").cloned().unwrap_or(Value::Null)});
                if let Some(s) = mo.get("subPath") {
                    x["sub_path"] = s.clone();
                }
                let ro = mo.get("readOnly").and_then(Value::as_bool) == Some(true)
                    || name.as_str().is_some_and(|n| read_only_claims.contains(n));
                if ro {
                    x["read_only"] = json!(true);
                }
                self.done(mo);
                mounts.push(x);
            }
            out.insert("volume_mounts".into(), Value::Array(mounts));
        }
        if let Some(sc) = o.get("securityContext") {
            let v = self.security(sc, &format!("{path}.securityContext"), false);
            out.insert("security_context".into(), v);
        }
        // Defaults `kubectl get -o yaml` writes, which change nothing here.
        for (k, default) in [
            ("terminationMessagePath", "/dev/termination-log"),
            ("terminationMessagePolicy", "File"),
        ] {
            if let Some(v) = o.get(k)
                && v.as_str() != Some(default)
            {
                self.unsupported(&o.at(k), "qci has only the default");
            }
        }
        self.done(o);
        Value::Object(out)
    }

    fn env(&mut self, env: &Value, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for (i, e) in self.list(env, path).iter().enumerate() {
            let ep = format!("{path}[{i}]");
            let Some(mut o) = self.obj(e, &ep) else {
                continue;
            };
            let name = o.get("name").cloned().unwrap_or(Value::Null);
            let value = o.get("value");
            if let Some(from) = o.get("valueFrom") {
                if value.is_some_and(|v| v != "") {
                    self.errs.push(FieldError::new(
                        ep.clone(),
                        "give value or valueFrom, not both",
                    ));
                }
                let fp = format!("{ep}.valueFrom");
                if let Some(mut f) = self.obj(from, &fp) {
                    let value = if let Some(r) = f.get("configMapKeyRef") {
                        self.key_ref(r, &format!("{fp}.configMapKeyRef"), false)
                    } else if let Some(r) = f.get("secretKeyRef") {
                        self.key_ref(r, &format!("{fp}.secretKeyRef"), true)
                    } else if let Some(r) = f.get("fieldRef") {
                        let fieldp = format!("{fp}.fieldRef");
                        match r.get("fieldPath").and_then(Value::as_str) {
                            Some(p) if crate::group::ENV_FIELDS.contains(&p) => {
                                Some(json!({"$fieldRef": p}))
                            }
                            Some(other) => {
                                self.unsupported(
                                    &format!("{fieldp}.fieldPath"),
                                    &format!(
                                        "{other:?}: qci gives {}",
                                        crate::group::ENV_FIELDS.join(", ")
                                    ),
                                );
                                None
                            }
                            None => None,
                        }
                    } else {
                        None
                    };
                    self.done(f);
                    match value {
                        Some(Value::Object(m)) if m.contains_key("$fieldRef") => out.push(json!({
                            "name": name,
                            "value_from": {"field_ref": {"field_path": m["$fieldRef"]}},
                        })),
                        Some(v) => out.push(json!({"name": name, "value": v})),
                        None => {}
                    }
                }
            } else {
                out.push(json!({"name": name, "value": value.cloned().unwrap_or(json!(""))}));
            }
            self.done(o);
        }
        out
    }

    fn key_ref(&mut self, r: &Value, path: &str, secret: bool) -> Option<Value> {
        let mut o = self.obj(r, path)?;
        let src = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = o
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let optional = o.get("optional").and_then(Value::as_bool) == Some(true);
        self.done(o);
        let data = if secret {
            self.secrets.get(&src).map(|(_, d)| d)
        } else {
            self.config_maps.get(&src)
        };
        match data.and_then(|d| d.get(&key)) {
            Some(v) => Some(json!(v)),
            None if optional => None,
            None => {
                let kind = if secret { "Secret" } else { "ConfigMap" };
                self.errs.push(FieldError::new(
                    path,
                    format!("no key {key:?} in {kind} {src:?} of the manifest"),
                ));
                None
            }
        }
    }

    fn probe(&mut self, p: &Value, path: &str, port_names: &BTreeMap<String, Value>) -> Value {
        let mut out = Map::new();
        let Some(mut o) = self.obj(p, path) else {
            return Value::Null;
        };
        let port = |this: &mut Ctx, v: Option<&Value>, at: &str| -> Value {
            match v {
                Some(Value::String(n)) => port_names.get(n).cloned().unwrap_or_else(|| {
                    this.errs.push(FieldError::new(
                        at,
                        format!("no port named {n:?} in the container"),
                    ));
                    Value::Null
                }),
                Some(v) => v.clone(),
                None => Value::Null,
            }
        };
        if let Some(e) = o.get("exec")
            && let Some(mut eo) = self.obj(e, &format!("{path}.exec"))
        {
            out.insert(
                "exec".into(),
                json!({"command": eo.get("command").cloned().unwrap_or(json!([]))}),
            );
            self.done(eo);
        }
        if let Some(h) = o.get("httpGet") {
            let hp = format!("{path}.httpGet");
            if let Some(mut ho) = self.obj(h, &hp) {
                let pv = ho.get("port");
                let mut x = json!({"path": ho.get("path").cloned().unwrap_or(json!("/")), "port": port(self, pv, &format!("{hp}.port"))});
                if let Some(s) = ho.get("scheme") {
                    x["scheme"] = s.clone();
                }
                out.insert("http_get".into(), x);
                self.done(ho);
            }
        }
        if let Some(t) = o.get("tcpSocket") {
            let tp = format!("{path}.tcpSocket");
            if let Some(mut to) = self.obj(t, &tp) {
                let pv = to.get("port");
                out.insert(
                    "tcp_socket".into(),
                    json!({"port": port(self, pv, &format!("{tp}.port"))}),
                );
                self.done(to);
            }
        }
        for (k, to) in [
            ("initialDelaySeconds", "initial_delay_seconds"),
            ("periodSeconds", "period_seconds"),
            ("timeoutSeconds", "timeout_seconds"),
            ("successThreshold", "success_threshold"),
            ("failureThreshold", "failure_threshold"),
        ] {
            if let Some(v) = o.get(k) {
                out.insert(to.into(), v.clone());
            }
        }
        self.done(o);
        Value::Object(out)
    }

    fn security(&mut self, sc: &Value, path: &str, pod: bool) -> Value {
        let mut out = Map::new();
        let Some(mut o) = self.obj(sc, path) else {
            return Value::Null;
        };
        let mut fields = vec![
            ("runAsUser", "run_as_user"),
            ("runAsGroup", "run_as_group"),
            ("runAsNonRoot", "run_as_non_root"),
        ];
        if pod {
            fields.extend([
                ("supplementalGroups", "supplemental_groups"),
                ("sysctls", "sysctls"),
            ]);
        } else {
            fields.extend([
                ("readOnlyRootFilesystem", "read_only_root_filesystem"),
                ("allowPrivilegeEscalation", "allow_privilege_escalation"),
                ("privileged", "privileged"),
                ("capabilities", "capabilities"),
            ]);
        }
        for (k, to) in fields {
            if let Some(v) = o.get(k) {
                out.insert(to.into(), v.clone());
            }
        }
        if let Some(s) = o.get("seccompProfile") {
            let mut x = json!({"type": s.get("type").cloned().unwrap_or(Value::Null)});
            if let Some(l) = s.get("localhostProfile") {
                x["localhost_profile"] = l.clone();
            }
            out.insert("seccomp_profile".into(), x);
        }
        self.done(o);
        Value::Object(out)
    }

    fn pull_secrets(&mut self, ps: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        for (i, s) in self.list(ps, "spec.imagePullSecrets").iter().enumerate() {
            let path = format!("spec.imagePullSecrets[{i}]");
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            let Some((kind, data)) = self.secrets.get(name).cloned() else {
                self.errs.push(FieldError::new(
                    format!("{path}.name"),
                    format!("no Secret {name:?} in the manifest"),
                ));
                continue;
            };
            let Some(cfg) = data
                .get(".dockerconfigjson")
                .filter(|_| kind == "kubernetes.io/dockerconfigjson")
            else {
                self.errs.push(FieldError::new(
                    format!("{path}.name"),
                    format!("Secret {name:?} is not of type kubernetes.io/dockerconfigjson"),
                ));
                continue;
            };
            let Ok(cfg) = serde_json::from_str::<Value>(cfg) else {
                self.errs.push(FieldError::new(
                    format!("Secret {name}: data..dockerconfigjson"),
                    "not JSON",
                ));
                continue;
            };
            for (server, a) in cfg
                .get("auths")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let (mut user, mut pass) = (
                    a.get("username")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    a.get("password")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                );
                if user.is_none()
                    && let Some(auth) = a.get("auth").and_then(Value::as_str)
                    && let Some((u, p)) = base64::engine::general_purpose::STANDARD
                        .decode(auth)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| {
                            s.split_once(':')
                                .map(|(u, p)| (u.to_string(), p.to_string()))
                        })
                {
                    user = Some(u);
                    pass = Some(p);
                }
                match (user, pass) {
                    (Some(u), Some(p)) => {
                        out.push(json!({"server": server, "username": u, "password": p}))
                    }
                    _ => self.errs.push(FieldError::new(
                        format!("Secret {name}: .dockerconfigjson auths.{server}"),
                        "needs username and password, or auth",
                    )),
                }
            }
        }
        out
    }
}

/// A file mode as qci writes it (`"0644"`): Kubernetes gives a number (`420`, or `0o644` in
/// YAML), and YAML 1.1's `0644`, which serde_yaml reads as a string, means octal.
fn mode_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n.as_u64().map(|m| format!("{m:04o}")),
        Value::String(s) if s.starts_with('0') => {
            u32::from_str_radix(s, 8).ok().map(|m| format!("{m:04o}"))
        }
        _ => None,
    }
}

/// A group spec as Kubernetes documents: its config files as one ConfigMap per volume
/// (`<group>-<volume>`), then the Pod. Registry credentials are left out (their passwords
/// are never shown again); disks appear as claims of the same name.
pub fn to_manifests(spec: &GroupSpec) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut pod_volumes = Vec::new();
    for v in &spec.volumes {
        if let Some(cf) = &v.config_file {
            let cm = format!("{}-{}", spec.name, v.name);
            let data: Map<String, Value> = cf
                .files
                .iter()
                .map(|f| (f.path.replace('/', "__"), json!(f.content)))
                .collect();
            docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm}, "data": data}));
            let items: Vec<Value> = cf
                .files
                .iter()
                .map(|f| {
                    let mut i = json!({"key": f.path.replace('/', "__"), "path": f.path});
                    if let Some(m) = f
                        .mode
                        .as_deref()
                        .and_then(|m| u32::from_str_radix(m, 8).ok())
                    {
                        i["mode"] = json!(m);
                    }
                    i
                })
                .collect();
            pod_volumes.push(json!({"name": v.name, "configMap": {"name": cm, "items": items}}));
        } else if let Some(e) = &v.empty_dir {
            let mut ed = json!({});
            if !e.medium.is_empty() {
                ed["medium"] = json!(e.medium);
            }
            if let Some(s) = &e.size_limit {
                ed["sizeLimit"] = json!(s.0);
            }
            pod_volumes.push(json!({"name": v.name, "emptyDir": ed}));
        } else if let Some(d) = &v.disk {
            pod_volumes.push(json!({"name": v.name, "persistentVolumeClaim": {"claimName": d.id}}));
        }
    }
    let container = |c: &crate::ContainerSpec| -> Value {
        let v = serde_json::to_value(c).unwrap_or_default();
        let mut k = camel(&v);
        // Sizes: qci's one number is the limit; the request says the same.
        let mut res = Map::new();
        for (from, to) in [("cpu", "cpu"), ("memory", "memory")] {
            if let Some(x) = k.as_object_mut().and_then(|m| m.remove(from)) {
                res.insert(to.into(), x);
            }
        }
        if !res.is_empty() {
            k["resources"] = json!({"limits": res.clone(), "requests": res});
        }
        if let Some(ports) = k.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if let Some(n) = p.as_object_mut().and_then(|m| m.remove("port")) {
                    p["containerPort"] = n;
                }
            }
        }
        k
    };
    let mut pod_spec = json!({
        "restartPolicy": spec.restart_policy,
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "containers": spec.containers.iter().map(container).collect::<Vec<_>>(),
    });
    if !spec.init_containers.is_empty() {
        pod_spec["initContainers"] = json!(
            spec.init_containers
                .iter()
                .map(container)
                .collect::<Vec<_>>()
        );
    }
    if !pod_volumes.is_empty() {
        pod_spec["volumes"] = json!(pod_volumes);
    }
    if let Some(r) = spec.runtime {
        pod_spec["runtimeClassName"] = json!(r.as_str());
    }
    if let Some(sc) = &spec.security_context {
        pod_spec["securityContext"] = camel(&serde_json::to_value(sc).unwrap_or_default());
    }
    let mut annotations = Map::new();
    let whole = serde_json::to_value(spec).unwrap_or_default();
    for (a, field) in ANNOTATIONS {
        let v = match field.strip_prefix("network.") {
            Some(n) => whole.get("network").and_then(|x| x.get(n)),
            None => whole.get(field),
        };
        if let Some(v) = v.filter(|v| !v.is_null()) {
            annotations.insert(a.into(), v.clone());
        }
    }
    let mut meta = json!({"name": spec.name});
    if !annotations.is_empty() {
        meta["annotations"] = Value::Object(annotations);
    }
    docs.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}));
    docs
}

/// snake_case keys to camelCase, all the way down (qci's spec is Kubernetes' in snake_case).
fn camel(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let mut out = String::new();
                    let mut up = false;
                    for ch in k.chars() {
                        if ch == '_' {
                            up = true;
                        } else if up {
                            out.extend(ch.to_uppercase());
                            up = false;
                        } else {
                            out.push(ch);
                        }
                    }
                    (out, camel(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data:
  index.html: "<h1>hi</h1>\n"
  GREETING: hello
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
type: Opaque
data:
  password: czNjcjN0          # s3cr3t
stringData:
  token: plain
---
apiVersion: v1
kind: Secret
metadata: {name: pull}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{"auths": {"registry.example:5000": {"auth": "dXNlcjpwYXNz"}}}'
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
  annotations: {qci.io/eip: auto, qci.io/shm-size: 64Mi}
spec:
  restartPolicy: OnFailure
  runtimeClassName: gvisor
  terminationGracePeriodSeconds: 5
  imagePullSecrets: [{name: pull}]
  initContainers:
    - name: setup
      image: registry.example:5000/bb:1
      command: [sh, -c, "echo init"]
  containers:
    - name: web
      image: registry.example:5000/bb:1
      args: [httpd, -f, -p, "8080"]
      workingDir: /www
      ports: [{name: http, containerPort: 8080, protocol: TCP}]
      env:
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: web-config, key: GREETING}}}
        - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: PLAIN, value: "1"}
      resources: {requests: {cpu: 250m, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}
      readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2}
      livenessProbe: {exec: {command: ["true"]}}
      volumeMounts:
        - {name: www, mountPath: /www}
        - {name: data, mountPath: /data, subPath: web}
        - {name: secret, mountPath: /secret, readOnly: true}
        - {name: scratch, mountPath: /scratch}
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [NET_RAW]}}
  volumes:
    - {name: www, configMap: {name: web-config, items: [{key: index.html, path: index.html}]}}
    - {name: data, persistentVolumeClaim: {claimName: data}}
    - {name: secret, secret: {secretName: creds, defaultMode: 0400}}
    - {name: scratch, emptyDir: {}}
"#;

    #[test]
    fn a_pod_and_what_it_uses_become_a_group() {
        let c = from_manifests(MANIFEST, false).unwrap();
        let s = &c.spec;
        assert_eq!(s.name, "web");
        assert_eq!(s.restart_policy, crate::RestartPolicy::OnFailure);
        assert_eq!(s.termination_grace_period_seconds, 5);
        assert_eq!(s.runtime, Some(crate::ContainerRuntime::Gvisor));
        assert_eq!(s.network.as_ref().unwrap().eip.as_deref(), Some("auto"));
        assert_eq!(s.shm_size.as_ref().unwrap().0, "64Mi");
        assert_eq!(c.disks, vec![("data".to_string(), 1 << 30)]);
        assert_eq!(s.registry_credentials.len(), 1);
        let rc = &s.registry_credentials[0];
        assert_eq!(
            (
                rc.server.as_str(),
                rc.username.as_str(),
                rc.password.as_str()
            ),
            ("registry.example:5000", "user", "pass")
        );
        let w = &s.containers[0];
        let env: Vec<(&str, &str)> = w
            .env
            .iter()
            .map(|e| {
                let from = e
                    .value_from
                    .as_ref()
                    .map(|f| f.field_ref.field_path.as_str());
                (e.name.as_str(), from.unwrap_or(e.value.as_str()))
            })
            .collect();
        assert_eq!(
            env,
            [
                ("GREETING", "hello"),
                ("PASSWORD", "s3cr3t"),
                ("POD", "metadata.name"),
                ("PLAIN", "1")
            ]
        );
        assert_eq!(w.cpu.as_ref().unwrap().0, "500m");
        assert_eq!(w.memory.as_ref().unwrap().0, "256Mi");
        assert_eq!(
            w.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .port,
            8080
        );
        assert_eq!(w.volume_mounts[1].sub_path.as_deref(), Some("web"));
        assert_eq!(w.volume_mounts[2].read_only, Some(true));
        let secret = s.volumes.iter().find(|v| v.name == "secret").unwrap();
        let files = &secret.config_file.as_ref().unwrap().files;
        assert_eq!(files.len(), 2);
        assert_eq!(
            (
                files[0].path.as_str(),
                files[0].content.as_str(),
                files[0].mode.as_deref()
            ),
            ("password", "s3cr3t", Some("0400"))
        );
        assert_eq!(
            s.init_containers[0].command.as_ref().unwrap()[2],
            "echo init"
        );
        assert!(
            c.warnings.iter().any(|w| w.starts_with("metadata.labels")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn what_qci_cannot_do_is_named_never_dropped() {
        let pod = |extra: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n    - name: c\n      image: bb:1\n{extra}"
            )
        };
        let cases = [
            (
                "      lifecycle: {preStop: {exec: {command: [x]}}}\n",
                "spec.containers[0].lifecycle",
            ),
            (
                "      ports: [{containerPort: 80, hostPort: 8080}]\n",
                "spec.containers[0].ports[0].hostPort",
            ),
            (
                "      resources: {limits: {nvidia.com/gpu: 1}}\n",
                "spec.containers[0].resources.limits.nvidia.com/gpu",
            ),
            ("  hostNetwork: true\n", "spec.hostNetwork"),
            ("  runtimeClassName: kata\n", "spec.runtimeClassName"),
            ("      env: {A: b}\n", "spec.containers[0].env"),
            (
                "  volumes: [{name: s, secret: {secretName: nowhere}}]\n",
                "spec.volumes[0].secret.secretName",
            ),
            ("  dnsPolicy: None\n", "spec.dnsPolicy"),
            (
                "      env: [{name: IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}]\n",
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
            ),
            (
                "      env: [{name: X, valueFrom: {configMapKeyRef: {name: none, key: k}}}]\n",
                "spec.containers[0].env[0].valueFrom.configMapKeyRef",
            ),
        ];
        for (extra, path) in cases {
            let errs = from_manifests(&pod(extra), false).unwrap_err();
            assert!(errs.iter().any(|e| e.field == path), "{extra}: {errs:?}");
            // (A missing key and a malformed list are errors even when lenient.)
            if !path.ends_with("configMapKeyRef")
                && !path.ends_with(".env")
                && !path.ends_with("secretName")
            {
                let c =
                    from_manifests(&pod(extra), true).unwrap_or_else(|e| panic!("{extra}: {e:?}"));
                assert!(
                    c.warnings.iter().any(|w| w.starts_with(path)),
                    "{extra}: {:?}",
                    c.warnings
                );
            }
        }
        // Other kinds, other versions, no Pod.
        let errs = from_manifests(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
            false,
        )
        .unwrap_err();
        assert!(
            errs.iter().any(|e| e.field.contains("Deployment d")),
            "{errs:?}"
        );
        let errs = from_manifests(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
            false,
        )
        .unwrap_err();
        assert!(errs.iter().any(|e| e.field == "Service s"), "{errs:?}");
        // A Pod that breaks qci's rules is refused by them.
        let errs =
            from_manifests(&pod("      ports: [{containerPort: 70000}]\n"), false).unwrap_err();
        assert!(errs.iter().any(|e| e.message.contains("65535")), "{errs:?}");
        assert!(is_kube(&pod("")));
        assert!(!is_kube("name: web\ncontainers: []\n"));
    }

    #[test]
    fn a_group_written_as_a_manifest_reads_back_the_same() {
        let c = from_manifests(MANIFEST, false).unwrap();
        let mut want = c.spec.clone();
        let docs = to_manifests(&c.spec);
        let text: String = docs
            .iter()
            .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
            .collect();
        let back = from_manifests(&text, false).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        // Passwords are never written out.
        want.registry_credentials.clear();
        assert_eq!(back.spec, want, "{text}");
        assert!(
            back.warnings.iter().all(|w| w.contains("claimName")),
            "{:?}",
            back.warnings
        );
    }
}
